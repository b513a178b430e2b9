"""Render ``compose/docker-compose-experiments.yml`` from the same service specs the docker
runtime runs, so the compose file and omnilab's own stacks cannot drift apart.

The seed's file, with its faults mended: pinned images (never ``latest``), ports on
127.0.0.1 on the experiment ports (no clash with production; the seed put Qdrant on
6334, production Qdrant's gRPC port), Qdrant's API key in the variable Qdrant reads
(``QDRANT__SERVICE__API_KEY``), healthchecks and ``depends_on: condition:
service_healthy``, GPUs through ``deploy.resources.reservations.devices``, and secrets as
``${VARIABLES}`` from an env file (made here with random values, mode 0600), never in the
file itself.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import jinja2

from omnilab.services import Ollama, Postgres, Qdrant, Redis
from omnilab.services.base import Credentials, Endpoint, Service

DEFAULT_PATH = Path("compose") / "docker-compose-experiments.yml"
#: Beside the compose file; gitignored.
ENV_FILE = ".env.experiments"
TEMPLATE = "docker-compose-experiments.yml.j2"


def secret_variable(service: Service) -> str:
    """The env file's variable holding ``service``'s secret (``REDIS_PASSWORD``...)."""
    return "QDRANT_API_KEY" if service.name == "qdrant" else f"{service.name.upper()}_PASSWORD"


def port_variable(service: Service, role: str) -> str:
    """The variable that moves a published port (``OMNILAB_PORT_REDIS``...)."""
    name = f"OMNILAB_PORT_{service.name.upper()}"
    return name if len(service.native_ports) == 1 else f"{name}_{role.upper()}"


def _placeholders(service: Service) -> Credentials:
    """Credentials whose secret is a compose variable, substituted from the env file."""
    real = service.new_credentials()
    if real.password is None:
        return real
    variable = secret_variable(service)
    return Credentials(
        username=real.username,
        password=f"${{{variable}:?{variable} is not set: use --env-file compose/{ENV_FILE}}}",
        database=real.database,
    )


def _default_image(service: Service) -> str:
    from omnilab.images.catalog import for_service

    built = for_service(service.name)
    return built.tag if built else service.default_image


def _service(service: Service) -> dict[str, Any]:
    credentials = _placeholders(service)
    plan = service.container_plan(credentials)
    variable = f"OMNILAB_IMAGE_{service.name.upper()}"
    volumes = []
    if plan.data_path:
        volumes.append(f"{service.alias}-data:{plan.data_path}")
    if plan.shared_path:
        volumes.append(f"{service.alias}-models:{plan.shared_path}")
    return {
        "alias": service.alias,
        "image": f"${{{variable}:-{_default_image(service)}}}",
        "command": plan.command,
        "environment": dict(plan.env),
        "ports": [
            (f"${{{port_variable(service, role)}:-{service.stack_ports[role]}}}", native)
            for role, native in service.native_ports.items()
        ],
        "volumes": volumes,
        "healthcheck": service.compose_healthcheck(credentials),
        "gpu": plan.takes_gpu,
    }


def _network_env(services: list[Service]) -> dict[str, str]:
    """What code in the experiments container reads: the seed's host names."""
    env = {"ENVIRONMENT": "docker_experiments"}
    for service in services:
        inside = Endpoint(
            service=service.name,
            host=service.alias,
            ports=dict(service.native_ports),
            credentials=_placeholders(service),
        )
        env.update(service.env(inside))
    return env


def _workers(services: list[Service]) -> list[dict[str, Any]]:
    from omnilab.images.catalog import CATALOG

    env = _network_env(services)
    depends = [s.alias for s in services]
    return [
        {
            "name": "omnimind-experiments",
            "profile": "experiments",
            "image": f"${{OMNILAB_IMAGE_EXPERIMENTS:-{CATALOG['experiments'].tag}}}",
            "environment": env,
            "volumes": ["../experiments:/app/experiments:ro", "../runs:/app/runs"],
            "depends_on": depends,
            "gpu": True,
        },
        {
            "name": "omnimind-code-gen",
            "profile": "codegen",
            "image": f"${{OMNILAB_IMAGE_SANDBOX:-{CATALOG['codegen'].tag}}}",
            "environment": env,
            "volumes": ["../generated-code:/app/generated-code"],
            "depends_on": depends,
            "gpu": False,
        },
    ]


def services_for(target: str | None) -> tuple[list[Service], str | None]:
    """The services of the experiment ``FILE[:Class]``, or all four; and where from."""
    if not target:
        return [Qdrant(), Redis(), Postgres(), Ollama()], None
    from omnilab.loader import load

    loaded = load(target)
    services = [s() if isinstance(s, type) else s for s in loaded.cls.services]
    name = Path(target.split(":")[0]).name
    return services, f"for {name}:{loaded.cls.__name__}"


def render(target: str | None = None) -> str:
    """The compose file's text for ``target`` (``FILE[:Class]``), or for all services."""
    services, source = services_for(target)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("omnilab.compose", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # JSON strings and lists are YAML flow scalars and sequences: quoting done once, right.
    env.filters["q"] = lambda value: json.dumps(value)
    rendered = [_service(s) for s in services]
    volumes = sorted({v.split(":")[0] for s in rendered for v in s["volumes"]})
    return env.get_template(TEMPLATE).render(
        services=rendered,
        workers=_workers(services),
        volumes=volumes,
        names=", ".join(s.alias for s in services),
        source=source,
    )


def ensure_env_file(path: Path, services: list[Service]) -> bool:
    """Make the env file with a random secret per service when it is missing (0600);
    add a missing variable to one that exists. True when it was written."""
    wanted = {secret_variable(s) for s in services if s.new_credentials().password}
    existing: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                existing[key.strip()] = value
    missing = sorted(wanted - set(existing))
    if not missing and path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Secrets of the experiment stack's compose file (never commit it)."
    lines = [] if path.exists() else [header]
    lines += [f"{key}={secrets.token_urlsafe(24)}" for key in missing]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return True


def export(target: str | None = None, output: Path = DEFAULT_PATH) -> tuple[Path, Path, bool]:
    """Write the compose file (and its env file when missing); their paths, and whether
    the env file was written."""
    text = render(target)
    services, _ = services_for(target)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    env_path = output.parent / ENV_FILE
    wrote = ensure_env_file(env_path, services)
    return output, env_path, wrote
