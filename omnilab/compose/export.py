"""Render ``compose/docker-compose-experiments.yml`` from the same service specs the docker
runtime runs, so the compose file and omnilab's own stacks cannot drift apart.

OmniMind's own compose file, with its faults mended: pinned images (never ``latest``),
ports on 127.0.0.1 on the experiment ports (no clash with production; OmniMind put Qdrant on
6334, production Qdrant's gRPC port), Qdrant's API key in the variable Qdrant reads
(``QDRANT__SERVICE__API_KEY``), healthchecks and ``depends_on: condition:
service_healthy``, GPUs through ``deploy.resources.reservations.devices`` (in a second
file, ``docker-compose-experiments.gpu.yml``, added with ``-f`` on GPU hosts: a GPU
reservation on an engine without GPUs stops the container), and secrets as
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

from omnilab.services import service_classes
from omnilab.services.base import Credentials, Endpoint, Service

DEFAULT_PATH = Path("compose") / "docker-compose-experiments.yml"
#: Beside the compose file; gitignored.
ENV_FILE = ".env.experiments"
TEMPLATE = "docker-compose-experiments.yml.j2"
GPU_TEMPLATE = "docker-compose-experiments.gpu.yml.j2"


def secret_variable(service: Service) -> str:
    """The env file's variable holding ``service``'s secret (``REDIS_PASSWORD``...)."""
    return service.secret_variable or f"{service.name.upper()}_PASSWORD"


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
        password=f"${{{variable}:?{variable} is not set: pass --env-file with {ENV_FILE}}}",
        database=real.database,
    )


def _default_image(service: Service) -> str:
    """The service's own ``image=`` if the experiment gives one, else the image
    `omnilab images build` makes for it, else the official pinned one
    (``OMNILAB_IMAGE_<SERVICE>`` still overrides it when compose runs)."""
    from omnilab.runtimes.docker.images.recipes import for_service

    if service.chosen_image:
        return service.chosen_image
    built = for_service(service.name)
    return built.tag if built else service.default_image


def _literal(text: str, placeholders: tuple[str, ...]) -> str:
    """``text`` with each ``$`` written as compose's ``$$`` (a start script's own
    variables are the container's, not compose's to substitute), except inside the
    secrets' placeholders, which compose must substitute."""
    for placeholder in placeholders:
        if placeholder in text:
            return placeholder.join(_literal(part, ()) for part in text.split(placeholder))
    return text.replace("$", "$$")


def _service(service: Service) -> dict[str, Any]:
    credentials = _placeholders(service)
    plan = service.container_plan(credentials)
    keep = (credentials.password,) if credentials.password else ()
    command = [_literal(part, keep) for part in plan.command] if plan.command else None
    variable = f"OMNILAB_IMAGE_{service.name.upper()}"
    volumes = []
    if plan.data_path:
        volumes.append(f"{service.alias}-data:{plan.data_path}")
    if plan.shared_path:
        volumes.append(f"{service.alias}-models:{plan.shared_path}")
    return {
        "alias": service.alias,
        "image": f"${{{variable}:-{_default_image(service)}}}",
        "command": command,
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
    """What code in the experiments container reads: OmniMind's host names."""
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


def _workers(services: list[Service], gpu: bool) -> list[dict[str, Any]]:
    from omnilab.runtimes.docker.images.recipes import CODEGEN, EXPERIMENTS

    env = _network_env(services)
    depends = [s.alias for s in services]
    return [
        {
            "name": "omnimind-experiments",
            "profile": "experiments",
            "image": f"${{OMNILAB_IMAGE_EXPERIMENTS:-{EXPERIMENTS.tag}}}",
            "environment": env,
            "volumes": ["../experiments:/app/experiments:ro", "../runs:/app/runs"],
            "depends_on": depends,
            "gpu": gpu,
        },
        {
            "name": "omnimind-code-gen",
            "profile": "codegen",
            "image": f"${{OMNILAB_IMAGE_SANDBOX:-{CODEGEN.tag}}}",
            "environment": env,
            "volumes": ["../generated-code:/app/generated-code"],
            "depends_on": depends,
            "gpu": False,
        },
    ]


def services_for(target: str | None) -> tuple[list[Service], bool, str | None]:
    """The services of the experiment ``FILE[:Class]``, or every registered one; whether its code
    may take GPUs (``gpu`` not False); and where they come from."""
    if not target:
        return [cls() for cls in service_classes().values()], True, None
    from omnilab.loader import load

    loaded = load(target)
    services = [s() if isinstance(s, type) else s for s in loaded.cls.services]
    name = Path(target.split(":")[0]).name
    return services, loaded.cls.gpu is not False, f"for {name}:{loaded.cls.__name__}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("omnilab.compose", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # JSON strings and lists are YAML flow scalars and sequences: quoting done once, right.
    env.filters["q"] = lambda value: json.dumps(value)
    return env


def gpu_path(output: Path) -> Path:
    """The GPU file beside the compose file ``output``."""
    return output.with_name(output.name.removesuffix(".yml") + ".gpu.yml")


def render(target: str | None = None, output: Path = DEFAULT_PATH) -> str:
    """The compose file's text for ``target`` (``FILE[:Class]``), or for all services."""
    services, gpu, source = services_for(target)
    rendered = [_service(s) for s in services]
    volumes = sorted({v.split(":")[0] for s in rendered for v in s["volumes"]})
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            services=rendered,
            workers=_workers(services, gpu),
            volumes=volumes,
            names=", ".join(s.alias for s in services),
            source=source,
            gpu_file=gpu_path(output).name if _gpu_names(services, gpu) else None,
        )
    )


def _gpu_names(services: list[Service], gpu: bool) -> list[str]:
    """The containers that take GPUs: Ollama's, and the experiments container unless the
    experiment says ``gpu = False``."""
    names = [s["alias"] for s in map(_service, services) if s["gpu"]]
    return names + [w["name"] for w in _workers(services, gpu) if w["gpu"]]


def render_gpu(target: str | None = None, output: Path = DEFAULT_PATH) -> str | None:
    """The GPU file's text: reservations for the containers that take GPUs (Ollama, and
    the experiments container unless the experiment says ``gpu = False``); None if none."""
    services, gpu, source = services_for(target)
    names = _gpu_names(services, gpu)
    if not names:
        return None
    return (
        _environment()
        .get_template(GPU_TEMPLATE)
        .render(names=names, source=source, main_file=output.name, gpu_file=gpu_path(output).name)
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
    # A file whose last line has no newline must not have a secret glued onto it.
    lead = "\n" if path.exists() and not path.read_bytes().endswith(b"\n") else ""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write(lead + "".join(line + "\n" for line in lines))
    path.chmod(0o600)
    return True


def export(
    target: str | None = None, output: Path = DEFAULT_PATH
) -> tuple[Path, Path | None, Path, bool]:
    """Write the compose file, its GPU file (when something takes GPUs) and its env file
    (when missing); their paths, and whether the env file was written."""
    text = render(target, output)
    gpu_text = render_gpu(target, output)
    services, _, _ = services_for(target)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    gpu_file = gpu_path(output)
    if gpu_text is None:
        gpu_file.unlink(missing_ok=True)  # one left by an earlier export would not match
    else:
        gpu_file.write_text(gpu_text)
    env_path = output.parent / ENV_FILE
    wrote = ensure_env_file(env_path, services)
    return output, gpu_file if gpu_text is not None else None, env_path, wrote
