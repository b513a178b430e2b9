"""Service specs: one module per service, each with everything particular to it."""

from omnilab.services.base import (
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
)
from omnilab.services.ollama.service import Ollama
from omnilab.services.postgres.service import Postgres
from omnilab.services.qdrant.service import Qdrant
from omnilab.services.redis.service import Redis

#: Service classes by name, for the CLI (`omnilab stack up redis postgres`) and the API.
SERVICES: dict[str, type[Service]] = {cls.name: cls for cls in (Qdrant, Redis, Postgres, Ollama)}

__all__ = [
    "SERVICES",
    "ContainerPlan",
    "Credentials",
    "Endpoint",
    "LaunchInfo",
    "LocalRecipe",
    "Ollama",
    "Postgres",
    "ProcessPlan",
    "Qdrant",
    "Redis",
    "Service",
]
