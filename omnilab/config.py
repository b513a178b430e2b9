"""Settings read from init arguments, the environment, ``.env.system`` and the project's
config file.

The names are the production team's own (``QDRANT_URL``, ``REDIS_URL``, ``POSTGRES_URL``,
``OLLAMA_BASE_URL``, ``ENVIRONMENT``) so that one ``.env.system`` configures both the
production services and omnilab. omnilab's own knobs are prefixed ``OMNILAB_``.

The config file is the project's: ``omnilab.toml``, or ``[tool.omnilab]`` of
``pyproject.toml``, in the project root (the nearest folder, walking up from the working
directory, that holds ``omnilab.toml``, ``pyproject.toml`` or ``.git``), so that a notebook
in a subfolder and a script at the root read the same settings and share one tracking
store. Its keys are the fields' names (``runtime = "docker"``); one it does not know is an
error, not a silent no-op. ``.env.system`` is read from the project root too (for the same
reason), and from the working directory first where that is another folder: a
subfolder's own file overrides the root's, value by value. Precedence, highest first:
init arguments, environment, the working directory's ``.env.system``, the root's
``.env.system``, ``omnilab.toml``, ``pyproject.toml``, defaults: what is set for one
shell or one host wins over what the project commits.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import AliasChoices, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from omnilab.errors import UsageError

DEFAULT_QDRANT_URL = "http://localhost:6333"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://localhost:5432/omnimind"
DEFAULT_OLLAMA_URL = "http://localhost:11434"

#: What marks a project's root folder, looked for from the working directory upwards.
PROJECT_MARKERS = ("omnilab.toml", "pyproject.toml", ".git")
CONFIG_FILE = "omnilab.toml"
PYPROJECT_FILE = "pyproject.toml"
#: The production team's variables file, read from the working directory and the root.
DOTENV_FILE = ".env.system"
#: The modules that declare settings classes read from the same config file. A key is
#: unknown only if none of them has a field of that name; they are imported by name, and
#: only when a key is not one of the reading class's own (the error path), because they
#: sit above this module.
_SETTINGS_MODULES = ("omnilab.queue.settings", "omnilab.workloads.settings")


def _state_home() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "omnilab"


#: Where settings being read look for the project root, when not the working directory
#: (a watcher process that works in ``/`` reading its user's settings).
_reading_from: ContextVar[Path | None] = ContextVar("omnilab_settings_from", default=None)


def project_root(start: Path | None = None) -> Path:
    """The project's folder: the nearest one, from ``start`` (the working directory)
    upwards, holding ``omnilab.toml``, ``pyproject.toml`` or ``.git``; ``start`` itself
    when none does. Where the config file is read and the embedded store lives."""
    here = (start or _reading_from.get() or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return here


def _default_home() -> Path:
    return project_root() / ".omnilab"


def _field_names(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Every name a value of ``settings_cls`` may arrive under (field name, aliases),
    mapped to its field's name."""
    names: dict[str, str] = {}
    for name, field in settings_cls.model_fields.items():
        names[name] = name
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        for choice in choices:
            if isinstance(choice, str):
                names[choice] = name
                names[choice.lower()] = name
    return names


def variable_name(name: str, field: FieldInfo) -> str:
    """A field's environment variable: the key the sources hand its value to pydantic
    under (its first alias)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return name


def _is_path(field: FieldInfo) -> bool:
    return field.annotation is Path or Path in get_args(field.annotation)


def known_file_keys() -> set[str]:
    """Every key a config file may hold: the fields of every omnilab settings class."""
    for module in _SETTINGS_MODULES:
        importlib.import_module(module)
    return {name for cls in ProjectSettings.registered for name in cls.model_fields}


class _ProjectFileSource:
    """What both config-file sources do with a file's table once pydantic-settings has
    read it: refuse unknown keys, resolve relative paths against the file's folder, and
    hand each value to pydantic under the field's alias (the file uses field names; the
    environment, aliases)."""

    label: str
    path: Path
    init_kwargs: dict[str, Any]

    def _adopt(self, settings_cls: type[BaseSettings], table: object, where: str) -> None:
        if not isinstance(table, dict):
            raise UsageError(f"{where}: expected a table of settings")
        fields = settings_cls.model_fields
        if any(key not in fields for key in table):
            known = known_file_keys()
            variables = {
                alias.lower(): name
                for cls in ProjectSettings.registered
                for alias, name in _field_names(cls).items()
            }
            for key in table:
                if key not in known:
                    close = difflib.get_close_matches(key, sorted(known), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else "see `omnilab config`"
                    if key.lower() in variables:  # a variable's name: the file uses fields'
                        hint = f"the file uses the setting's name: {variables[key.lower()]!r}"
                    raise UsageError(f"unknown setting {key!r} in {where}: {hint}")
        data: dict[str, Any] = {}
        for key, value in table.items():
            field = fields.get(key)
            if field is None:
                continue  # another settings class's (the queue's, the workloads')
            if _is_path(field) and isinstance(value, str):
                path = Path(value).expanduser()
                value = str(path if path.is_absolute() else self.path.parent / path)
            data[variable_name(key, field)] = value
        self.init_kwargs = data


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


class OmnilabTomlSource(_ProjectFileSource, TomlConfigSettingsSource):
    """``omnilab.toml`` at the project root: the whole file is omnilab's."""

    label = CONFIG_FILE

    def __init__(self, settings_cls: type[BaseSettings], root: Path) -> None:
        self.path = root / CONFIG_FILE
        super().__init__(settings_cls, toml_file=self.path, toml_table_header=())
        self._adopt(settings_cls, self.toml_data, str(self.path))

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return _read_toml(Path(file_path))


class PyprojectSource(_ProjectFileSource, PyprojectTomlConfigSettingsSource):
    """``[tool.omnilab]`` of ``pyproject.toml`` at the project root."""

    label = PYPROJECT_FILE

    def __init__(self, settings_cls: type[BaseSettings], root: Path) -> None:
        self.path = root / PYPROJECT_FILE
        super().__init__(settings_cls, toml_file=self.path)
        self._adopt(settings_cls, self.toml_data, f"[tool.omnilab] of {self.path}")

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        return _read_toml(Path(file_path))


class DotEnvFileSource(DotEnvSettingsSource):
    """One ``.env.system``, named as seen from the working directory (``.env.system``,
    ``../.env.system``) so that ``omnilab config`` can say which file set a value.

    Relative paths in the project root's file are read from its folder, as in the config
    files: ``OMNILAB_HOME=store`` there must name one store from every subfolder, not one
    per folder a command runs in.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: Path, here: Path) -> None:
        self.path = path
        self.here = here
        self.label = DOTENV_FILE if path.parent == here else os.path.relpath(path, here)
        super().__init__(settings_cls, env_file=path)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        if self.path.parent == self.here:
            return data
        names = _field_names(self.settings_cls)
        for key, value in data.items():
            field = names.get(key) or names.get(key.lower())
            if field is None or not isinstance(value, str) or not value:
                continue
            if _is_path(self.settings_cls.model_fields[field]):
                path = Path(value).expanduser()
                data[key] = str(path if path.is_absolute() else self.path.parent / path)
        return data


def _dotenv_sources(
    settings_cls: type[BaseSettings], given: PydanticBaseSettingsSource, root: Path
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The ``.env.system`` files read, highest first: the working directory's, then the
    project root's (one file when they are the same folder). A file named explicitly
    (``get_settings(env_file=...)``) is read alone."""
    if not isinstance(given, DotEnvSettingsSource) or given.env_file != DOTENV_FILE:
        return (given,)
    here = (_reading_from.get() or Path.cwd()).resolve()
    files = dict.fromkeys([here / DOTENV_FILE, root / DOTENV_FILE])
    return tuple(DotEnvFileSource(settings_cls, path, here) for path in files)


def dotenv_files(start: Path | None = None) -> list[Path]:
    """The ``.env.system`` files that exist and are read, highest first."""
    here = (start or _reading_from.get() or Path.cwd()).resolve()
    files = dict.fromkeys([here / DOTENV_FILE, project_root(here) / DOTENV_FILE])
    return [path for path in files if path.is_file()]


class ProjectSettings(BaseSettings):
    """What every omnilab settings class shares: its sources and their order."""

    model_config = SettingsConfigDict(
        env_file=DOTENV_FILE,  # read from the working directory and the project root
        env_file_encoding="utf-8",
        extra="ignore",
        pyproject_toml_table_header=("tool", "omnilab"),
    )

    #: Every settings class built on this one (which keys a config file may hold).
    registered: ClassVar[list[type[BaseSettings]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ProjectSettings.registered.append(cls)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        root = project_root()
        return (
            init_settings,
            env_settings,
            *_dotenv_sources(settings_cls, dotenv_settings, root),
            OmnilabTomlSource(settings_cls, root),
            PyprojectSource(settings_cls, root),
        )


class Settings(ProjectSettings):
    """All configuration in one validated object.

    ``postgres_url`` is production's, never the tracking store's: a stack's variables
    reuse the name, and following it would move the runs' history with every shell.
    Unset, promotion targets the production default ``postgresql://localhost:5432/omnimind``
    (see :attr:`production_postgres_url`). The tracking store is ``tracking_url``, or an
    embedded PostgreSQL under ``home`` (``.omnilab/`` at the project root).
    """

    environment: Literal["production", "docker_experiments"] = Field(
        default="production", validation_alias="ENVIRONMENT"
    )
    qdrant_url: str = Field(default=DEFAULT_QDRANT_URL, validation_alias="QDRANT_URL")
    qdrant_api_key: str | None = Field(default=None, validation_alias="QDRANT_API_KEY")
    #: Production Qdrant's gRPC port (promotions read and write points over it); unset,
    #: the port after the one in ``QDRANT_URL`` (6333 -> 6334, Qdrant's own pairing).
    qdrant_grpc_port: int | None = Field(default=None, validation_alias="QDRANT_GRPC_PORT")
    redis_url: str = Field(default=DEFAULT_REDIS_URL, validation_alias="REDIS_URL")
    postgres_url: str | None = Field(default=None, validation_alias="POSTGRES_URL")
    ollama_base_url: str | None = Field(default=None, validation_alias="OLLAMA_BASE_URL")
    ollama_model: str | None = Field(default=None, validation_alias="OLLAMA_MODEL")
    cuda_visible_devices: str | None = Field(default=None, validation_alias="CUDA_VISIBLE_DEVICES")

    home: Path = Field(
        default_factory=_default_home,
        validation_alias="OMNILAB_HOME",
        description="The embedded tracking store's folder: .omnilab at the project root.",
    )
    runs_dir: Path = Field(default=Path("runs"), validation_alias="OMNILAB_RUNS_DIR")
    artifacts_url: str | None = Field(
        default=None,
        validation_alias="OMNILAB_ARTIFACTS_URL",
        description="Where a run's artifacts and log go when it ends: unset, they stay in "
        "its folder under runs_dir; a folder (shared by the hosts); or s3://bucket/prefix "
        "on any S3-compatible store (credentials, endpoint and region from the AWS_* "
        "variables or profiles, as the AWS tools read them).",
    )

    @field_validator("artifacts_url")
    @classmethod
    def _artifacts_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        artifacts_location(value)
        return value.strip()

    data_dir: Path = Field(default=Path("data/experiments"), validation_alias="OMNILAB_DATA_DIR")
    state_dir: Path = Field(default_factory=_state_home, validation_alias="OMNILAB_STATE_DIR")
    tracking_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OMNILAB_TRACKING_URL"),
        description="The tracking store's PostgreSQL; unset: the embedded one under home.",
    )
    runtime: str = Field(
        default="auto",
        validation_alias="OMNILAB_RUNTIME",
        description="A runtime plug-in's name (local, docker...) or auto.",
    )

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        from omnilab import plugins

        choices = ["auto", *plugins.names("runtime")]
        if value not in choices:
            raise ValueError(f"unknown runtime {value!r}: choose one of {', '.join(choices)}")
        return value

    service_user: str = Field(
        default="nobody",
        validation_alias="OMNILAB_SERVICE_USER",
        description="Unprivileged user that runs PostgreSQL when omnilab itself runs as root.",
    )
    ready_timeout: float = Field(default=60.0, validation_alias="OMNILAB_READY_TIMEOUT")
    retention_days: float = Field(
        default=14.0,
        ge=0,
        validation_alias="OMNILAB_RETENTION_DAYS",
        description="Days a promotable run's stack data is kept waiting for promotion; "
        "0 keeps it until the run is promoted or discarded.",
    )
    promote_lock_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias="OMNILAB_PROMOTE_LOCK_TIMEOUT",
        description="Seconds a promotion's switch waits for production locks before giving up.",
    )

    fork_cache_dir: Path | None = Field(
        default=None,
        validation_alias="OMNILAB_FORK_CACHE_DIR",
        description="Where forks of production items are cached (docs/fork.md); "
        "unset: fork-cache under home (.omnilab/fork-cache at the project root).",
    )
    fork_cache_size: str | int = Field(
        default="10GiB",
        validation_alias="OMNILAB_FORK_CACHE_SIZE",
        description="The fork cache's bound ('512m', '10GiB'); the least recently used "
        "entries go first. 0 turns the cache off.",
    )

    @field_validator("fork_cache_size")
    @classmethod
    def _size(cls, value: str | int) -> str:
        from omnilab.resources import parse_size

        if str(value).strip() not in ("0", ""):
            try:
                parse_size(str(value), "fork_cache_size")
            except UsageError:
                raise ValueError(
                    f"{value!r} is not a size: write '512m', '10GiB' (k, m, g, t: powers "
                    "of 1024), or 0 to turn the cache off"
                ) from None
        return str(value)

    @property
    def fork_cache_folder(self) -> Path:
        return self.fork_cache_dir or self.home / "fork-cache"

    @property
    def fork_cache_bytes(self) -> int:
        """The fork cache's bound in bytes; 0: turned off."""
        from omnilab.resources import parse_size

        if str(self.fork_cache_size).strip() in ("0", ""):
            return 0
        size = parse_size(str(self.fork_cache_size), "fork_cache_size")
        return 2**62 if size == "unlimited" else size

    @property
    def production_postgres_url(self) -> str:
        return self.postgres_url or DEFAULT_POSTGRES_URL

    @property
    def production_ollama_url(self) -> str:
        return self.ollama_base_url or DEFAULT_OLLAMA_URL

    @property
    def tracking_dsn(self) -> str | None:
        """The tracking store's URL, or None for the embedded store under :attr:`home`.
        Never ``postgres_url``: that is production's (and a stack's, in its shell)."""
        return self.tracking_url

    @property
    def tracking_location(self) -> str:
        """Which tracking store is in use, as it may be shown (no secrets)."""
        from omnilab.redact import redact_url

        if self.tracking_url:
            return redact_url(self.tracking_url)
        return f"embedded PostgreSQL at {self.home.resolve()}"


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def artifacts_location(url: str) -> tuple[str, str]:
    """``OMNILAB_ARTIFACTS_URL`` read: ``("s3", "bucket/prefix")`` or ``("folder", path)``;
    a ValueError naming what is wrong otherwise. Credentials never belong in the URL:
    the AWS variables and profiles hold them, where every AWS tool looks."""
    from omnilab.redact import redact_url

    text = url.strip()
    shown = redact_url(text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "folder", text
    usage = "use a folder or s3://bucket/prefix"
    if scheme.lower() == "file":
        if not rest.startswith("/"):
            raise ValueError(f"{shown!r}: a file URL needs an absolute path (file:///srv/runs)")
        return "folder", rest
    if scheme.lower() != "s3":
        raise ValueError(f"{shown!r}: {scheme}:// is not a store omnilab knows: {usage}")
    if "@" in rest.split("/", 1)[0]:
        raise ValueError(
            f"{shown!r}: no credentials in the URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if "?" in rest or "#" in rest:
        raise ValueError(f"{shown!r}: no query or fragment; {usage}")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{shown!r}: no bucket; {usage}")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"{shown!r}: {bucket!r} is not a bucket name (3 to 63 lowercase letters, "
            "digits, dots and hyphens)"
        )
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") or any(ord(c) < 32 for c in p) for p in parts):
        raise ValueError(f"{shown!r}: the prefix may not hold '.', '..' or control characters")
    return "s3", "/".join([bucket, *parts])


#: Where a value came from, when no source set it.
DEFAULT = "default"


def _label(source: PydanticBaseSettingsSource) -> str:
    if isinstance(source, (_ProjectFileSource, DotEnvFileSource)):
        return source.label
    if isinstance(source, DotEnvSettingsSource):  # before its base class, EnvSettingsSource
        env_file = source.env_file
        return str(env_file) if isinstance(env_file, (str, Path)) else ".env.system"
    if isinstance(source, EnvSettingsSource):
        return "environment"
    if isinstance(source, InitSettingsSource):
        return "argument"
    return type(source).__name__


def setting_origins(
    settings_cls: type[ProjectSettings] | None = None,
    env_file: Path | None = None,
    init: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Where each field of ``settings_cls`` gets its value: ``environment``,
    ``.env.system`` (or the root's, as ``../.env.system``), ``omnilab.toml``,
    ``pyproject.toml`` (its ``[tool.omnilab]``) or ``default``.

    The sources are built and ordered as :meth:`ProjectSettings.settings_customise_sources`
    does for the settings themselves, so the answer cannot drift from the values.
    """
    cls = settings_cls or Settings
    dotenv_file = env_file if env_file is not None else cls.model_config.get("env_file")
    sources = cls.settings_customise_sources(
        cls,
        InitSettingsSource(cls, dict(init or {})),
        EnvSettingsSource(cls),
        DotEnvSettingsSource(cls, env_file=dotenv_file),
        InitSettingsSource(cls, {}),
    )
    names = _field_names(cls)
    origins: dict[str, str] = {}
    for source in sources:
        for key in source():
            field = names.get(key) or names.get(key.lower())
            if field is not None and field not in origins:
                origins[field] = _label(source)
    return {name: origins.get(name, DEFAULT) for name in cls.model_fields}


def describe_validation_error(
    exc: Any, settings_cls: type[ProjectSettings], env_file: Path | None = None
) -> str:
    """One line for pydantic's report: the first bad value, named as where it was set
    (``OMNILAB_RUNTIME: ...`` from the environment, ``runtime in omnilab.toml: ...``)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    field = _field_names(settings_cls).get(where)
    if field is not None:
        try:
            origin = setting_origins(settings_cls, env_file).get(field, DEFAULT)
        except UsageError:
            origin = DEFAULT
        if origin in (CONFIG_FILE, PyprojectSource.label):
            file = CONFIG_FILE if origin == CONFIG_FILE else PYPROJECT_FILE
            where = f"{field} in {project_root() / file}"
    return f"{where}: {message}"


def get_settings(env_file: Path | None = None, *, cwd: Path | None = None) -> Settings:
    """Read the settings now (from ``env_file`` alone instead of the working directory's
    and the project root's ``.env.system`` if given; the
    project's config file found from ``cwd`` instead of the working directory if given).

    Not cached: a notebook or a test that changes the environment between runs must see
    the change, and reading a few variables costs far less than starting a stack.
    """
    from pydantic import ValidationError

    token = _reading_from.set(cwd)
    try:
        if env_file is not None:
            return Settings(_env_file=env_file)  # type: ignore[call-arg]
        return Settings()
    except ValidationError as exc:
        # One line naming the variable, not pydantic's report (a usage error: exit 2).
        raise UsageError(describe_validation_error(exc, Settings, env_file)) from None
    finally:
        _reading_from.reset(token)
