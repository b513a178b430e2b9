"""Completions from Ollama through the official ``ollama`` client, cached in Redis.

:class:`LLM` is the one place that talks to the model: it makes sure the model is there
(pulling it with a progress bar when it is not), sends chat or generate requests,
streaming or not, measures each one, and consults the completion cache first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from omnilab.errors import OmnilabError, UsageError
from omnilab.workloads.completion_cache import CompletionCache, cache_key

Mode = Literal["chat", "generate"]
#: New answers stored per Redis round trip at most (see :meth:`LLM.complete_many`).
FLUSH_EVERY = 32
#: Tries of one completion when the connection to the server drops.
ATTEMPTS = 3


class ModelUnavailable(UsageError):
    """The model is not on the Ollama server and may not (or could not) be pulled."""


class CompletionError(OmnilabError):
    """The Ollama server answered a completion request with an error."""


@dataclass
class Completion:
    """One answer of the model, as this run obtained it."""

    text: str
    model: str
    mode: str
    key: str
    #: Whether it came from the cache, and from which one (``run`` or a source's label).
    cached: bool
    cache_source: str | None
    #: Wall time of this request as seen here: the model's answer, or the cache lookup.
    latency_s: float
    #: Wall time until the first streamed piece (None without streaming or from the cache).
    first_token_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    #: Server-reported generation time (``eval_duration``), kept from the original answer.
    eval_s: float | None
    #: Wall time the original (uncached) answer took.
    original_latency_s: float
    created_at: str

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed of the original answer: server figures when it gives them."""
        if not self.completion_tokens:
            return None
        seconds = self.eval_s or self.original_latency_s
        return self.completion_tokens / seconds if seconds > 0 else None

    def to_record(self) -> dict[str, Any]:
        """What the cache stores (no per-lookup fields)."""
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_record(
        cls, key: str, record: dict[str, Any], source: str, seconds: float
    ) -> Completion:
        stored: dict[str, Any] = {k: record.get(k) for k in _RECORD_FIELDS}
        return cls(
            key=key,
            cached=True,
            cache_source=source,
            latency_s=seconds,
            first_token_s=None,
            **stored,
        )


_RECORD_FIELDS = (
    "text",
    "model",
    "mode",
    "prompt_tokens",
    "completion_tokens",
    "eval_s",
    "original_latency_s",
    "created_at",
)


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns else None


class LLM:
    """A model on an Ollama server, with the run's completion cache in front of it."""

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        mode: Mode = "chat",
        stream: bool = True,
        options: Mapping[str, Any] | None = None,
        system: str | None = None,
        cache: CompletionCache | None = None,
        progress: TextIO | None = None,
    ) -> None:
        if mode not in ("chat", "generate"):
            raise UsageError(f"mode must be 'chat' or 'generate', not {mode!r}")
        self.client = client
        self.model = model
        self.mode = mode
        self.stream = stream
        self.options = dict(options or {})
        self.system = system
        self.cache = cache or CompletionCache(None)
        self.digest: str | None = None
        #: Whether ensure_model() found (or pulled) the model on the server.
        self.ready = False
        self._progress = progress

    @property
    def progress(self) -> TextIO:
        return self._progress or sys.stderr

    # -- the model ----------------------------------------------------------------------

    def ensure_model(self, *, pull: bool = True) -> str | None:
        """Make sure the server has the model (pulling it if allowed); its digest."""
        import ollama

        wanted = self.model if ":" in self.model else f"{self.model}:latest"

        def digest() -> str | None:
            for m in self.client.list().models:
                if m.model in (self.model, wanted):
                    found: str | None = m.digest
                    return found
            return None

        try:
            found = digest()
        except (ollama.ResponseError, OSError) as exc:
            raise ModelUnavailable(f"ollama: cannot list models ({exc})") from None
        if found is None:
            if not pull:
                raise ModelUnavailable(
                    f"ollama: model {self.model!r} is not on the server and pull=False"
                )
            self._pull()
            found = digest()
        self.digest = found
        self.ready = True
        return found

    def _pull(self) -> None:
        """``ollama pull`` with a progress bar on stderr (plain lines when not a terminal)."""
        import ollama
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        console = Console(file=self.progress, highlight=False, emoji=False)
        console.print(f"ollama: model {self.model!r} is not on the server; pulling it")
        began = time.monotonic()
        tasks: dict[str, Any] = {}
        try:
            with Progress(
                TextColumn("  {task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=console,
                transient=False,
            ) as bar:
                for part in self.client.pull(self.model, stream=True):
                    if part.total and part.digest:
                        if part.digest not in tasks:
                            tasks[part.digest] = bar.add_task(part.status, total=part.total)
                        bar.update(tasks[part.digest], completed=part.completed or 0)
                    elif part.status and not console.is_terminal:
                        console.print(f"  {part.status}")
        except ollama.ResponseError as exc:
            raise ModelUnavailable(f"ollama: cannot pull {self.model!r}: {exc.error}") from None
        console.print(f"ollama: pulled {self.model!r} in {time.monotonic() - began:.1f}s")

    # -- completions --------------------------------------------------------------------

    def request(self, prompt: str) -> dict[str, Any]:
        """Everything that shapes the answer, hence the cache key."""
        return {
            "model": self.model,
            "digest": self.digest,
            "mode": self.mode,
            "system": self.system,
            "prompt": prompt,
            "options": self.options,
        }

    def key(self, prompt: str) -> str:
        return cache_key(self.request(prompt))

    def complete(self, prompt: str) -> Completion:
        return self.complete_many([prompt])[0]

    def complete_many(self, prompts: Sequence[str]) -> list[Completion]:
        """Answers in order: all cache lookups in one round trip, then the model for misses.

        New answers are stored in batches (one MSET per ``FLUSH_EVERY`` answers, and
        whatever is left when the batch ends or fails), not one round trip each.
        """
        keys = [self.key(p) for p in prompts]
        began = time.perf_counter()
        hits = self.cache.get_many(keys) if self.cache.enabled else {}
        lookup_s = (time.perf_counter() - began) / max(len(keys), 1)
        answers: list[Completion] = []
        fresh: dict[str, Completion] = {}
        pending: dict[str, dict[str, Any]] = {}
        try:
            for prompt, key in zip(prompts, keys, strict=True):
                if key in hits:
                    record, where = hits[key]
                    answers.append(Completion.from_record(key, record, where, lookup_s))
                elif key in fresh:  # the same prompt twice in one batch: asked once
                    answers.append(fresh[key])
                else:
                    completion = self._ask(prompt, key)
                    pending[key] = completion.to_record()
                    fresh[key] = completion
                    answers.append(completion)
                    if len(pending) >= FLUSH_EVERY:
                        self.cache.put_many(pending)
                        pending.clear()
        finally:
            self.cache.put_many(pending)
        return answers

    def _ask(self, prompt: str, key: str) -> Completion:
        """One request to the model; a dropped connection is retried (the request is
        sent again from the start), an error the server answers with is not."""
        import httpx
        import ollama

        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._request(prompt, key)
            except ollama.ResponseError as exc:
                raise CompletionError(
                    f"ollama {self.mode} with {self.model!r}: {exc.error}"
                ) from None
            except (httpx.TransportError, ConnectionError) as exc:
                if attempt == ATTEMPTS:
                    raise CompletionError(
                        f"ollama {self.mode} with {self.model!r}: connection lost "
                        f"{ATTEMPTS} times ({type(exc).__name__}: {exc})"
                    ) from None
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def _request(self, prompt: str, key: str) -> Completion:
        began = time.perf_counter()
        first: float | None = None
        if self.mode == "chat":
            messages = [{"role": "user", "content": prompt}]
            if self.system:
                messages.insert(0, {"role": "system", "content": self.system})
            reply = self.client.chat(
                model=self.model, messages=messages, stream=self.stream, options=self.options
            )
        else:
            reply = self.client.generate(
                model=self.model,
                prompt=prompt,
                system=self.system,
                stream=self.stream,
                options=self.options,
            )
        if self.stream:
            pieces: list[str] = []
            final = None
            for part in reply:
                piece = part.message.content if self.mode == "chat" else part.response
                if piece and first is None:
                    first = time.perf_counter() - began
                pieces.append(piece or "")
                final = part
            text = "".join(pieces)
        else:
            final = reply
            text = reply.message.content if self.mode == "chat" else reply.response
        elapsed = time.perf_counter() - began
        return Completion(
            text=text or "",
            model=self.model,
            mode=self.mode,
            key=key,
            cached=False,
            cache_source=None,
            latency_s=elapsed,
            first_token_s=first,
            prompt_tokens=getattr(final, "prompt_eval_count", None),
            completion_tokens=getattr(final, "eval_count", None),
            eval_s=_seconds(getattr(final, "eval_duration", None)),
            original_latency_s=elapsed,
            created_at=datetime.now(UTC).isoformat(),
        )
