"""A small Ollama-API-compatible stand-in server, for tests only.

No Ollama server or model can be obtained where the tests run, so this answers the
endpoints omnilab uses (``/api/version``, ``/api/tags``, ``/api/show``, ``/api/pull``,
``/api/generate``, ``/api/chat``, ``/api/embed``) from fixtures, with the same JSON and
NDJSON-streaming shapes as Ollama. Tests drive it through the official ``ollama`` client
over real HTTP.

Run it as ``python tests/support/ollama_standin/ollama_standin.py [serve]``: it listens
on ``OLLAMA_HOST`` (``127.0.0.1:11434`` by default), like ``ollama serve``. Completions
come from the JSON file named by ``OLLAMA_STANDIN_FIXTURES`` (``{"prompt substring":
"completion"}``), else the reply echoes the prompt. Models "present" are those in
``OLLAMA_STANDIN_MODELS`` (comma-separated; default ``standin:latest``); pulling any other
name adds it.

Stand-in only: ``OLLAMA_STANDIN_TOKENS_PER_S`` paces answers like a model generating
that many tokens per second (0, the default, answers at once), and ``GET /standin/stats``
counts the requests per endpoint, so tests can tell whether a completion was asked for.
``OLLAMA_STANDIN_DROP=N`` resets the connection of the first N completion requests
(generate, chat), as a server that restarts mid-request would.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.6.2-standin"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class StandinState:
    def __init__(self) -> None:
        names = os.environ.get("OLLAMA_STANDIN_MODELS", "standin:latest")
        self.models = {n.strip() for n in names.split(",") if n.strip()}
        path = os.environ.get("OLLAMA_STANDIN_FIXTURES")
        self.fixtures: dict[str, str] = {}
        if path:
            with open(path) as fh:
                self.fixtures = json.load(fh)
        self.delay = float(os.environ.get("OLLAMA_STANDIN_DELAY", "0"))
        self.tokens_per_s = float(os.environ.get("OLLAMA_STANDIN_TOKENS_PER_S", "0"))
        self.drop = int(os.environ.get("OLLAMA_STANDIN_DROP", "0"))
        self.requests = 0
        self.by_route: dict[str, int] = {}
        self.lock = threading.Lock()

    def complete(self, prompt: str) -> str:
        for needle, answer in self.fixtures.items():
            if needle in prompt:
                return answer
        return f"echo: {prompt}"

    def has(self, model: str) -> bool:
        return model in self.models or f"{model}:latest" in self.models


STATE = StandinState()


def _tokens(text: str) -> list[str]:
    """Split like a tokenizer would, keeping spaces so the pieces join back exactly."""
    pieces, current = [], ""
    for ch in text:
        current += ch
        if ch in " \n":
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces or [""]


def _vector(text: str, dim: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:dim]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


class Handler(BaseHTTPRequestHandler):
    server_version = "ollama-standin"
    protocol_version = "HTTP/1.1"
    # Like Ollama's own server (Go sets TCP_NODELAY): streamed pieces go out at once
    # instead of waiting ~40 ms for the client's delayed acknowledgement.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing -------------------------------------------------------------------

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        return json.loads(self.rfile.read(length) or b"{}")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _pace(self, tokens: int) -> None:
        """Take as long as a model generating ``STATE.tokens_per_s`` would."""
        if STATE.tokens_per_s > 0:
            time.sleep(tokens / STATE.tokens_per_s)

    def _stream(self, chunks: list[dict[str, Any]], final: Any = None, paced: bool = False) -> None:
        """NDJSON chunks; ``final`` (called after the others) builds the closing chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(chunk: dict[str, Any]) -> None:
            line = (json.dumps(chunk) + "\n").encode()
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        for chunk in chunks:
            if paced:
                self._pace(1)
            send(chunk)
        if final is not None:
            send(final())
        self.wfile.write(b"0\r\n\r\n")

    def _missing_model(self, model: str) -> bool:
        if STATE.has(model):
            return False
        self._json(404, {"error": f"model '{model}' not found, try pulling it first"})
        return True

    # -- routes ---------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._json(200, {"version": VERSION})
        elif self.path == "/api/tags":
            models = [
                {
                    "name": m,
                    "model": m,
                    "modified_at": _now(),
                    "size": 1_000_000,
                    "digest": hashlib.sha256(m.encode()).hexdigest(),
                    "details": {
                        "format": "gguf",
                        "family": "standin",
                        "parameter_size": "1M",
                        "quantization_level": "Q4_0",
                    },
                }
                for m in sorted(STATE.models)
            ]
            self._json(200, {"models": models})
        elif self.path == "/standin/stats":
            with STATE.lock:
                self._json(200, {"requests": STATE.requests, "by_route": dict(STATE.by_route)})
        elif self.path in ("/", ""):
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"Ollama is running")
        else:
            self._json(404, {"error": "not found"})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._body()
        with STATE.lock:
            STATE.requests += 1
            STATE.by_route[self.path] = STATE.by_route.get(self.path, 0) + 1
        route = {
            "/api/show": self._show,
            "/api/pull": self._pull,
            "/api/generate": self._generate,
            "/api/chat": self._chat,
            "/api/embed": self._embed,
        }.get(self.path)
        if route is None:
            self._json(404, {"error": "not found"})
            return
        if self.path in ("/api/generate", "/api/chat") and self._dropped():
            return
        route(body)

    def _dropped(self) -> bool:
        """Reset this connection (RST, not a clean close) while drops remain."""
        with STATE.lock:
            if STATE.drop <= 0:
                return False
            STATE.drop -= 1
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True
        return True

    def _show(self, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name") or ""
        if self._missing_model(model):
            return
        self._json(
            200,
            {
                "modelfile": f"FROM {model}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": {
                    "format": "gguf",
                    "family": "standin",
                    "parameter_size": "1M",
                    "quantization_level": "Q4_0",
                },
                "model_info": {"general.architecture": "standin"},
                "modified_at": _now(),
            },
        )

    def _pull(self, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name") or ""
        total = 4_000_000
        digest = "sha256:" + hashlib.sha256(model.encode()).hexdigest()
        chunks: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        chunks += [
            {
                "status": f"pulling {digest[7:19]}",
                "digest": digest,
                "total": total,
                "completed": total * i // 4,
            }
            for i in range(1, 5)
        ]
        chunks += [{"status": "verifying sha256 digest"}, {"status": "success"}]
        with STATE.lock:
            STATE.models.add(model if ":" in model else f"{model}:latest")
        if body.get("stream", True):
            self._stream(chunks)
        else:
            self._json(200, {"status": "success"})

    def _timings(self, prompt: str, answer: str, began: float) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - began, 1e-6)
        count = len(_tokens(answer))
        # Paced answers spend their time generating; unpaced ones split it evenly.
        generating = count / STATE.tokens_per_s if STATE.tokens_per_s > 0 else elapsed / 2
        generating = min(generating, elapsed)
        return {
            "total_duration": int(elapsed * 1e9),
            "load_duration": 0,
            "prompt_eval_count": len(_tokens(prompt)),
            "prompt_eval_duration": int((elapsed - generating) * 1e9),
            "eval_count": count,
            "eval_duration": int(generating * 1e9),
        }

    def _generate(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if self._missing_model(model):
            return
        began = time.perf_counter()
        prompt = body.get("prompt", "")
        if STATE.delay:
            time.sleep(STATE.delay)
        answer = STATE.complete(prompt)
        base = {"model": model, "created_at": _now()}

        def final() -> dict[str, Any]:
            return {
                **base,
                "response": "",
                "done": True,
                "done_reason": "stop",
                **self._timings(prompt, answer, began),
            }

        if body.get("stream", True):
            pieces = [{**base, "response": t, "done": False} for t in _tokens(answer)]
            self._stream(pieces, final, paced=True)
        else:
            self._pace(len(_tokens(answer)))
            self._json(200, {**final(), "response": answer})

    def _chat(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if self._missing_model(model):
            return
        began = time.perf_counter()
        messages = body.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        if STATE.delay:
            time.sleep(STATE.delay)
        answer = STATE.complete(prompt)
        base = {"model": model, "created_at": _now()}

        def final() -> dict[str, Any]:
            return {
                **base,
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                **self._timings(prompt, answer, began),
            }

        if body.get("stream", True):
            pieces = [
                {**base, "message": {"role": "assistant", "content": t}, "done": False}
                for t in _tokens(answer)
            ]
            self._stream(pieces, final, paced=True)
        else:
            self._pace(len(_tokens(answer)))
            self._json(200, {**final(), "message": {"role": "assistant", "content": answer}})

    def _embed(self, body: dict[str, Any]) -> None:
        model = body.get("model", "")
        if self._missing_model(model):
            return
        inputs = body.get("input", "")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        self._json(200, {"model": model, "embeddings": [_vector(t) for t in texts]})


def serve(host: str | None = None) -> None:
    address = host or os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    address = address.removeprefix("http://")
    name, _, port = address.rpartition(":")
    # Tests of a lost race for a port: the stand-in binds late, as a slow server would.
    time.sleep(float(os.environ.get("OLLAMA_STANDIN_BIND_DELAY", "0")))
    server = ThreadingHTTPServer((name or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    print(f"ollama stand-in listening on {address}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] not in ("serve",):
        if sys.argv[1] in ("--version", "-v"):
            print(f"ollama version is {VERSION}")
            sys.exit(0)
        sys.exit(f"ollama stand-in: only `serve` and `--version` are supported, not {sys.argv[1:]}")
    serve()
