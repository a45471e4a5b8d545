"""A local OpenAI-compatible server for the llm step's tests, on 127.0.0.1 (a thread).

It speaks the chat completions protocol as OpenAI does: `POST /v1/chat/completions` answers a
`chat.completion` JSON object, or with `"stream": true` a `text/event-stream` of
`chat.completion.chunk` objects (`data: {...}` lines, chunked), a last chunk with the
`finish_reason`, a usage chunk (empty `choices`) when `stream_options.include_usage`, then
`data: [DONE]`. Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.

What it answers is scripted per model: `script(model, reply, reply, ...)`; the n-th request for a
model gets the n-th reply (the last one again after that). A reply may call tools
(`Answer("", tool_calls=(Call("lookup", {"id": 1}), ...))`, ids `call_{request}_{n}`); every
request is kept (`requests(model)`), so a test sees what each turn sent back (the tool results).
With `api_key` set, a request without `Authorization: Bearer <api_key>` gets 401, its message
quoting the key it was given (OpenAI quotes part of it; quoting all of it is what a test of key
hiding wants).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """A tool call in a scripted answer: `arguments` a JSON text (sent as is) or a value."""

    name: str
    arguments: Any = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    content: str
    tool_calls: tuple[Call, ...] = ()
    """The answer calls these tools (`finish_reason` `tool_calls`); streamed, each call comes
    as its id and name, then its arguments in two pieces."""
    finish_reason: str = "stop"
    prompt_tokens: int = 11
    completion_tokens: int | None = None
    """Default: one per streamed token (words, see `tokens`)."""
    token_delay_s: float = 0.0
    """Pause between streamed chunks (a model producing tokens)."""
    cut_after: int | None = None
    """Streamed: hang up after this many tokens, mid-body (a connection lost)."""


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


Reply = Answer | Failure


def tokens(content: str) -> list[str]:
    """How an answer is streamed: each word with the space before it."""
    words = content.split(" ")
    return [words[0]] + [" " + w for w in words[1:]] if content else []


@dataclass(frozen=True)
class Request:
    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api_key: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api_key = api_key
        self.lock = threading.Lock()
        self.scripts: dict[str, list[Reply]] = {}
        self.responders: dict[str, Callable[[dict[str, Any]], Reply]] = {}
        self.requests: dict[str, list[Request]] = defaultdict(list)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-stream is expected


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, failure: Failure) -> None:
        body = {
            "error": {
                "message": failure.message,
                "type": failure.type,
                "param": None,
                "code": failure.code,
            }
        }
        self._json(failure.status, body, failure.headers)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            return self._error(Failure(404, f"Invalid URL (POST {self.path})", code=None))
        model = str(body.get("model", ""))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            seen = self.server.requests[model]
            seen.append(Request(model, body, headers, time.time()))
            script = self.server.scripts.get(model)
            reply = script[min(len(seen), len(script)) - 1] if script else None
            responder = self.server.responders.get(model)
            if responder is not None:
                reply = responder(body)
            number = len(seen)
        expected = self.server.api_key
        given = headers.get("authorization", "").removeprefix("Bearer ")
        if expected is not None and given != expected:
            return self._error(
                Failure(
                    401,
                    f"Incorrect API key provided: {given or '(none)'}.",
                    code="invalid_api_key",
                )
            )
        if reply is None:
            return self._error(
                Failure(404, f"The model `{model}` does not exist", code="model_not_found")
            )
        if isinstance(reply, Failure):
            return self._error(reply)
        if body.get("stream"):
            return self._stream(
                model,
                reply,
                bool((body.get("stream_options") or {}).get("include_usage")),
                number,
            )
        return self._json(200, _completion(model, reply, number))

    def _stream(self, model: str, answer: Answer, include_usage: bool, number: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0}
        pieces = tokens(answer.content)
        for n, piece in enumerate(pieces):
            delta: dict[str, Any] = {"content": piece}
            if n == 0:
                delta["role"] = "assistant"
            self._event({**base, "model": model, "choices": [_choice(delta, None)]})
            if answer.token_delay_s:
                time.sleep(answer.token_delay_s)
            if answer.cut_after is not None and n + 1 >= answer.cut_after:
                self.close_connection = True  # no last chunk: the body ends short
                return
        for n, call in enumerate(_tool_calls(answer, number)):
            # As OpenAI streams a call: its id and name first, then its arguments in pieces.
            arguments = call["function"]["arguments"]
            head = {**call, "index": n, "function": {"name": call["function"]["name"]}}
            head["function"]["arguments"] = ""
            self._event(
                {**base, "model": model, "choices": [_choice({"tool_calls": [head]}, None)]}
            )
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                more = {"index": n, "function": {"arguments": piece}}
                self._event(
                    {**base, "model": model, "choices": [_choice({"tool_calls": [more]}, None)]}
                )
        self._event({**base, "model": model, "choices": [_choice({}, _finish(answer))]})
        if include_usage:
            usage = _usage(answer, len(pieces))
            self._event({**base, "model": model, "choices": [], "usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    def _event(self, data: dict[str, Any]) -> None:
        self._chunk(f"data: {json.dumps(data)}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _usage(answer: Answer, streamed: int) -> dict[str, int]:
    completion = answer.completion_tokens if answer.completion_tokens is not None else streamed
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


def _tool_calls(answer: Answer, number: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{number}_{n}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments),
            },
        }
        for n, call in enumerate(answer.tool_calls)
    ]


def _finish(answer: Answer) -> str:
    return (
        "tool_calls"
        if answer.tool_calls and answer.finish_reason == "stop"
        else answer.finish_reason
    )


def _completion(model: str, answer: Answer, number: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.content or None,
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls(answer, number)
    finish = _finish(answer)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": _usage(answer, len(tokens(answer.content))),
    }


class FakeLlm:
    """Handle on a running fake server: `url` is its base URL (`.../v1`)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def script(self, model: str, *replies: Reply) -> None:
        with self._server.lock:
            self._server.scripts[model] = list(replies)

    def respond(self, model: str, reply: Callable[[dict[str, Any]], Reply]) -> None:
        """Answer every request for `model` with `reply(request body)` (requests sent at once,
        whose order is not known, each get their own answer)."""
        with self._server.lock:
            self._server.responders[model] = reply

    def requests(self, model: str) -> list[Request]:
        with self._server.lock:
            return list(self._server.requests.get(model, []))


@contextmanager
def run_fake_llm(api_key: str | None = None) -> Iterator[FakeLlm]:
    server = _Server(api_key)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield FakeLlm(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
