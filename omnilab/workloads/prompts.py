"""Prompt templates: jinja2 files shipped with omnilab and the user's own folder.

A user's template with the same name as a shipped one wins, so a team can adapt the
wording without forking omnilab. Templates render with ``StrictUndefined``: a variable
the template uses but the task does not give is an error naming both, not a prompt with
a silent hole in it (which would still be sent, cached and scored).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from omnilab.errors import UsageError

SHIPPED_DIR = Path(__file__).resolve().parent / "templates"
SUFFIX = ".j2"


class TemplateError(UsageError):
    """A prompt template that does not exist, does not parse, or lacks a variable."""


@dataclass(frozen=True)
class RenderedPrompt:
    template: str
    #: Where the template came from: ``shipped`` or the user's folder.
    origin: str
    #: sha256 of the template's source, so a manifest tells which wording was used.
    template_sha256: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


class PromptTemplates:
    """The shipped templates, overridden by those in ``user_dir`` when given."""

    def __init__(self, user_dir: str | Path | None = None) -> None:
        self.user_dir = Path(user_dir).expanduser().resolve() if user_dir else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise TemplateError(f"templates folder {user_dir} does not exist")
        folders = [str(SHIPPED_DIR)]
        if self.user_dir is not None:
            folders.insert(0, str(self.user_dir))
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,  # prompts are plain text, not HTML
        )

    def names(self) -> list[str]:
        """Template names (without ``.j2``), the user's and the shipped ones."""
        return sorted(
            {n.removesuffix(SUFFIX) for n in self._env.list_templates() if n.endswith(SUFFIX)}
        )

    def path(self, name: str) -> Path:
        for folder in (self.user_dir, SHIPPED_DIR):
            if folder is not None and (folder / f"{name}{SUFFIX}").is_file():
                return folder / f"{name}{SUFFIX}"
        raise TemplateError(
            f"no prompt template {name!r} (available: {', '.join(self.names())}"
            + (f"; user folder {self.user_dir}" if self.user_dir else "")
            + ")"
        )

    def render(self, name: str, variables: dict[str, object]) -> RenderedPrompt:
        path = self.path(name)
        source = path.read_text(encoding="utf-8")
        try:
            template = self._env.get_template(path.name)
            text = template.render(**variables)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"prompt template {name!r}: {exc} (give it in the task)") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"prompt template {path}: syntax error on line {exc.lineno}: {exc.message}"
            ) from None
        origin = "shipped" if path.parent == SHIPPED_DIR else str(path.parent)
        return RenderedPrompt(
            template=name,
            origin=origin,
            template_sha256=hashlib.sha256(source.encode()).hexdigest(),
            text=text.strip() + "\n",
        )
