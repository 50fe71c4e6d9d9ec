"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tests.

This is the one allowed stand-in: the remote LLM. Everything else (litellm, the gateway,
the proposer, the agent) runs for real against it. The server speaks enough of
``POST /v1/chat/completions`` for litellm's OpenAI client (plain JSON and SSE streaming,
text and tool calls) and injects the faults real providers produce: slow replies,
HTTP 429 with ``Retry-After``, 5xx, malformed JSON bodies.

Usage::

    with StubLLM(["```python\\nclass ModelNew: ...\\n```"]) as stub:
        config = stub.llm_config()
        ...
        assert stub.requests[0]["messages"][0]["role"] == "system"

A script is a list of replies (consumed in order) or a callable that gets the request
JSON and returns a reply. A reply is a ``str`` (the assistant text) or a ``Reply``.
When a list script runs dry the server answers HTTP 500 "stub script exhausted" and
counts it in ``overruns``, so a test can tell "the code asked for too much" apart from
an injected fault.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STUB_API_KEY = "sk-stub-not-a-secret"
STUB_KEY_ENV = "DAEDALUS_STUB_API_KEY"


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = ""


@dataclass
class Reply:
    """One scripted answer. Defaults give a plain, successful text reply."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent verbatim instead of a JSON completion
    prompt_tokens: int | None = None  # None: a deterministic estimate from the request
    completion_tokens: int | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    stream_abort_after: int | None = None  # streaming: drop the connection after N chunks

    @classmethod
    def rate_limited(cls, retry_after: float | None = 0.1) -> Reply:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        body = json.dumps({"error": {"message": "Rate limit reached (stub)", "type": "requests",
                                     "code": "rate_limit_exceeded"}})
        return cls(status=429, headers=headers, raw_body=body)

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        body = json.dumps({"error": {"message": f"Internal server error {status} (stub)",
                                     "type": "server_error"}})
        return cls(status=status, raw_body=body)

    @classmethod
    def auth_error(cls) -> Reply:
        body = json.dumps({"error": {"message": "Incorrect API key provided (stub)",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}})
        return cls(status=401, raw_body=body)

    @classmethod
    def malformed(cls) -> Reply:
        return cls(raw_body='{"id": "chatcmpl-broken", "choices": [{"message": {"content": "x"')

    @classmethod
    def slow(cls, delay_s: float, content: str = "too late") -> Reply:
        return cls(content=content, delay_s=delay_s)


Script = Sequence[Reply | str] | Callable[[dict[str, Any]], Reply | str]


def _estimate_tokens(text: str) -> int:
    # Deterministic and roughly GPT-like (4 characters a token) so tests can predict usage.
    return max(1, (len(text) + 3) // 4)


class StubLLM:
    """A background-thread HTTP server; use as a context manager or call ``close()``."""

    def __init__(self, script: Script = ()) -> None:
        self._lock = threading.Lock()
        self._script: Script = list(script) if not callable(script) else script
        self._position = 0
        self._closing = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.overruns = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The ``api_base`` to configure: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, script: Script) -> None:
        """Replace the script (and forget the position in the old one)."""
        with self._lock:
            self._script = list(script) if not callable(script) else script
            self._position = 0

    def push(self, *replies: Reply | str) -> None:
        """Append replies to a list script."""
        with self._lock:
            if callable(self._script):
                raise TypeError("push() needs a list script; this stub runs a callable")
            self._script = [*self._script, *replies]

    @property
    def remaining(self) -> int:
        with self._lock:
            return 0 if callable(self._script) else len(self._script) - self._position

    def llm_config(self, **overrides: Any) -> Any:
        """An ``LLMConfig`` pointing at this stub (needs ``STUB_KEY_ENV`` set; the fixture does)."""
        from daedalus.tools.llm import LLMConfig

        values: dict[str, Any] = {"model": "openai/stub", "api_base": self.url,
                                  "api_key_env": STUB_KEY_ENV, "timeout_s": 10.0,
                                  "max_retries": 2, "backoff_base_s": 0.01,
                                  "backoff_max_s": 0.05}
        values.update(overrides)
        return LLMConfig(**values)

    def last_user_message(self, index: int = -1) -> str:
        """The text of the last user message of request ``index``."""
        messages = self.requests[index]["messages"]
        users = [m for m in messages if m.get("role") == "user"]
        return _text_of(users[-1]["content"]) if users else ""

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- called from handler threads ---------------------------------------------------

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._script
            if callable(script):
                reply: Reply | str | None = None
            elif self._position < len(script):
                reply = script[self._position]
                self._position += 1
            else:
                self.overruns += 1
                return Reply(status=500, raw_body=json.dumps(
                    {"error": {"message": "stub script exhausted", "type": "server_error"}}))
        if reply is None and callable(script):
            reply = script(request)
        assert reply is not None
        return Reply(content=reply) if isinstance(reply, str) else reply

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server is closing; True when the sleep ran to its end."""
        return not self._closing.wait(seconds)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _usage(request: dict[str, Any], reply: Reply, text: str) -> dict[str, int]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = sum(_estimate_tokens(_text_of(m.get("content"))) + 4
                     for m in request.get("messages", []))
    completion = reply.completion_tokens
    if completion is None:
        completion = _estimate_tokens(text) if text else 1
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _tool_calls_json(reply: Reply) -> list[dict[str, Any]]:
    calls = []
    for i, call in enumerate(reply.tool_calls):
        args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
        calls.append({"id": call.id or f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                      "index": i, "function": {"name": call.name, "arguments": args}})
    return calls


def _completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    calls = _tool_calls_json(reply)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion",
            "created": int(time.time()), "model": request.get("model", "stub"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": _usage(request, reply, reply.content)}


def _stream_chunks(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:16]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": request.get("model", "stub")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    text = reply.content
    step = 16
    for start in range(0, len(text), step):
        yield chunk({"content": text[start:start + step]})
    calls = _tool_calls_json(reply)
    for call in calls:
        yield chunk({"tool_calls": [call]})
    yield chunk({}, reply.finish_reason or ("tool_calls" if calls else "stop"))
    if (request.get("stream_options") or {}).get("include_usage"):
        yield {**base, "choices": [], "usage": _usage(request, reply, text)}


def _handler_for(stub: StubLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": "stub", "object": "model", "owned_by": "daedalus-tests"}]}))
            else:
                self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
                return
            try:
                request = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                self._send(400, json.dumps({"error": {"message": "request body is not JSON"}}))
                return
            with stub._lock:
                stub.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = stub._next_reply(request)
            if reply.delay_s and not stub._wait(reply.delay_s):
                return
            try:
                if reply.raw_body is not None or reply.status != 200:
                    body = reply.raw_body if reply.raw_body is not None else ""
                    self._send(reply.status, body, reply.headers)
                elif request.get("stream"):
                    self._stream(request, reply)
                else:
                    self._send(200, json.dumps(_completion(request, reply)), reply.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nothing to tell it

        def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, request: dict[str, Any], reply: Reply) -> None:
            # Chunked encoding, as real servers stream: a dropped connection is then an
            # incomplete body the client notices, not a clean end of the stream.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            events = [f"data: {json.dumps(piece)}\n\n" for piece in _stream_chunks(request, reply)]
            events.append("data: [DONE]\n\n")
            for sent, event in enumerate(events):
                if reply.stream_abort_after is not None and sent >= reply.stream_abort_after:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler
