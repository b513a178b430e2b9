"""Ollama: ``ollama-exp`` in OmniMind's experiments stack, the LLM server for experiments.

Locally it runs ``ollama serve`` when the binary is installed, on the stack's own port,
reading models from the user's usual models folder (models are gigabytes; copying them
per run would be absurd). Without the binary, a server at ``OLLAMA_BASE_URL`` is used as
an external service (not isolated, and said so); with neither, the run stops before
anything starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from omnilab.errors import ServiceUnavailable
from omnilab.redact import redact_url
from omnilab.resources import Resources
from omnilab.services.base import (
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
    http_problem,
    tcp_problem,
)
from omnilab.services.binaries import version_line, which

if TYPE_CHECKING:
    import ollama

    from omnilab.config import Settings


class Ollama(Service):
    """An Ollama server for one run; ``ctx.ollama`` is an ``ollama.Client``.

    ``model`` names the model the experiment uses; it is recorded with the run.
    """

    name: ClassVar[str] = "ollama"
    alias: ClassVar[str] = "ollama-exp"
    native_ports: ClassVar[dict[str, int]] = {"http": 11434}
    stack_ports: ClassVar[dict[str, int]] = {"http": 11435}
    production_ports: ClassVar[dict[str, int]] = {"http": 11434}
    default_image: ClassVar[str] = "ollama/ollama:0.6.2"
    takes_gpu: ClassVar[bool] = True
    env_names: ClassVar[tuple[str, ...]] = ("OLLAMA_BASE_URL",)
    unbuildable_reason: ClassVar[str] = "no Debian package provides Ollama"
    optional_locally: ClassVar[bool] = True
    #: A model is held in memory while it answers: a 7B model quantised to 4 bits takes
    #: about 5 GiB.
    default_resources: ClassVar[Resources | None] = Resources(memory="8g")

    def __init__(self, *, model: str | None = None, image: str | None = None) -> None:
        super().__init__(image=image)
        self.model = model

    def __repr__(self) -> str:
        return f"Ollama(model={self.model!r})" if self.model else "Ollama()"

    def new_credentials(self) -> Credentials:
        return Credentials()  # Ollama has no authentication of its own.

    def local_recipe(self, settings: Settings) -> LocalRecipe:
        binary = which(["ollama"])
        if binary is not None:
            version = version_line(str(binary))
            models = os.environ.get("OLLAMA_MODELS") or str(Path.home() / ".ollama" / "models")

            # The user's own Ollama settings (OLLAMA_NUM_PARALLEL, OLLAMA_KEEP_ALIVE,
            # OLLAMA_CONTEXT_LENGTH...) and GPU choice apply to the stack's server too;
            # only the address is the stack's own.
            passed = {
                k: v
                for k, v in os.environ.items()
                if (k.startswith("OLLAMA_") and k != "OLLAMA_HOST") or k == "CUDA_VISIBLE_DEVICES"
            }

            def make(launch: LaunchInfo) -> ProcessPlan:
                return ProcessPlan(
                    argv=[str(binary), "serve"],
                    env={
                        **passed,
                        "OLLAMA_HOST": f"127.0.0.1:{launch.ports['http']}",
                        "OLLAMA_MODELS": models,
                    },
                )

            return LocalRecipe(
                kind="process",
                source=f"ollama {version or ''} (system; models from {models})",
                ports=("http",),
                make=make,
                version=version,
            )

        url = settings.ollama_base_url
        if not url:
            raise ServiceUnavailable(
                "ollama: a local stack that needs Ollama runs an `ollama` binary from PATH, "
                "or uses the server at OLLAMA_BASE_URL: neither is here (install Ollama, "
                "set OLLAMA_BASE_URL, or use --runtime docker)"
            )
        url = url.rstrip("/")
        try:
            self.probe(Endpoint(service=self.name, external_url=url))
        except Exception as exc:
            raise ServiceUnavailable(
                f"ollama: no `ollama` binary on PATH, and OLLAMA_BASE_URL={redact_url(url)} "
                f"does not answer ({type(exc).__name__})"
            ) from None
        return LocalRecipe(
            kind="external",
            source=f"existing server at OLLAMA_BASE_URL={redact_url(url)} (shared, not isolated)",
            url=url,
        )

    def container_plan(self, credentials: Credentials) -> ContainerPlan:
        return ContainerPlan(
            image=self.image(),
            data_path="/root/.ollama",
            shared_path="/root/.ollama/models",
            takes_gpu=True,
        )

    def compose_healthcheck(self, credentials: Credentials) -> list[str]:
        return ["CMD", "ollama", "list"]

    def url(self, endpoint: Endpoint, *, secrets: bool = False) -> str:
        if endpoint.external_url:
            # OLLAMA_BASE_URL is the user's: it may hold credentials.
            return endpoint.external_url if secrets else redact_url(endpoint.external_url)
        return f"http://{endpoint.host}:{endpoint.port}"

    def probe(self, endpoint: Endpoint) -> None:
        import httpx

        httpx.get(f"{self.url(endpoint)}/api/tags", timeout=2).raise_for_status()

    def client(self, endpoint: Endpoint) -> ollama.Client:
        import ollama

        return ollama.Client(host=self.url(endpoint))

    def close_client(self, client: object) -> None:
        inner = getattr(client, "_client", None)  # ollama.Client wraps an httpx.Client
        if inner is not None:
            inner.close()

    def server_version(self, endpoint: Endpoint) -> str | None:
        import httpx

        body = httpx.get(f"{self.url(endpoint)}/api/version", timeout=2).json()
        return f"ollama {body.get('version', '?')}"

    @classmethod
    def production_url(cls, settings: Settings) -> str | None:
        return settings.production_ollama_url

    @classmethod
    def production_problem(cls, settings: Settings) -> str | None:
        url = settings.production_ollama_url
        return tcp_problem(url, cls.production_ports["http"]) or http_problem(url, "/api/version")
