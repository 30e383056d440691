"""Fixtures for the agent tests: a real HTTP server on 127.0.0.1 that speaks the OpenAI
chat-completions protocol and answers from a script, and one shared Lab.

The server is a plain ``http.server`` in a thread (``/v1/chat/completions`` answers as OpenAI,
``/v1/messages`` as Anthropic): every request is parsed as JSON, recorded
(path, headers, body) and answered with the next step of the script:

* ``{"answer": {...}}``  - an assistant message calling the output tool with these arguments
* ``{"raw_args": "..."}`` - an output-tool call whose arguments are the given text (malformed JSON)
* ``{"status": 429, "retry_after": "0"}`` - an HTTP error with that status
* ``{"hang": 5}``        - sleep this many seconds before answering the next step
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class ScriptedLLM:
    """An OpenAI-compatible endpoint answering from ``script`` (a list of steps, see module doc)."""

    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.usage = (120, 80)  # prompt, completion tokens per answer
        self._lock = threading.Lock()
        self._stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def send(self, status: int, payload: bytes, ctype: str = "application/json", **headers: str) -> None:
                self.send_response(status)
                for key, value in {"content-type": ctype, "content-length": str(len(payload)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                    step = outer.script.pop(0) if outer.script else {"status": 500, "error": "script exhausted"}
                if "hang" in step:
                    outer._stop.wait(step["hang"])
                    try:
                        self.wfile.write(b"")
                    except OSError:
                        pass
                    return
                if "status" in step:
                    payload = json.dumps({"error": {"message": step.get("error", "rate limited"), "type": "rate_limit_error",
                                                    "code": str(step["status"])}}).encode()
                    extra = {"retry-after": str(step["retry_after"])} if "retry_after" in step else {}
                    self.send(step["status"], payload, **extra)
                    return
                tools = body.get("tools") or []
                prompt, completion = outer.usage
                if self.path.endswith("/messages") and body.get("stream"):  # Anthropic, streamed (server-sent events)
                    tool_name = tools[0]["name"] if tools else "final_result"
                    n = len(outer.requests)
                    events = [
                        ("message_start", {"type": "message_start", "message": {
                            "id": f"msg_{n}", "type": "message", "role": "assistant", "model": body.get("model"),
                            "content": [], "stop_reason": None, "stop_sequence": None,
                            "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
                        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
                            "type": "tool_use", "id": f"toolu_{n}", "name": tool_name, "input": {}}}),
                        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                            "type": "input_json_delta", "partial_json": json.dumps(step["answer"])}}),
                        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                           "usage": {"output_tokens": completion}}),
                        ("message_stop", {"type": "message_stop"}),
                    ]
                    payload = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
                    self.send(200, payload, "text/event-stream")
                    return
                if self.path.endswith("/messages"):  # Anthropic messages API
                    tool_name = tools[0]["name"] if tools else "final_result"
                    payload = json.dumps({
                        "id": f"msg_{len(outer.requests)}", "type": "message", "role": "assistant",
                        "model": body.get("model", "scripted"), "stop_reason": "tool_use", "stop_sequence": None,
                        "content": [{"type": "tool_use", "id": f"toolu_{len(outer.requests)}", "name": tool_name,
                                     "input": step["answer"]}],
                        "usage": {"input_tokens": prompt, "output_tokens": completion},
                    }).encode()
                    self.send(200, payload)
                    return
                tool_name = tools[0]["function"]["name"] if tools else "final_result"
                args = step["raw_args"] if "raw_args" in step else json.dumps(step["answer"])
                payload = json.dumps({
                    "id": f"chatcmpl-{len(outer.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": None,
                        "tool_calls": [{"id": f"call_{len(outer.requests)}", "type": "function",
                                        "function": {"name": tool_name, "arguments": args}}]}}],
                    "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion},
                }).encode()
                self.send(200, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def llm():
    server = ScriptedLLM()
    yield server
    server.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One embedded Lab (backtest + broker servers) per agent test module, closed after it (a lab left
    open for the whole session would be the active lab in other areas' tests)."""
    from quantlab import Lab

    lab = Lab.start(tmp_path_factory.mktemp("agent") / "hub", progress=False)
    yield lab
    lab.close()
