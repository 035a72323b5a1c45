"""A local fake OpenAI-compatible server (`POST /v1/chat/completions`, no streaming) with scripted replies."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_server import LocalServer


class FakeOpenAI(LocalServer):
    """`reply` is what the next completions return: text, ("status", code), ("malformed",),
    ("slow", seconds, text), or a function of the request body giving one of those."""

    def __init__(self) -> None:
        self.reply: Any = "NOT_IN_PASSAGES"
        self.stream_delay = 0.05
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, without a 40 ms delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.requests.append(
                    {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                )
                reply = fake.reply(body) if callable(fake.reply) else fake.reply
                if isinstance(reply, tuple) and reply[0] == "slow":
                    time.sleep(reply[1])
                    reply = reply[2]
                if isinstance(reply, tuple) and reply[0] == "status":
                    self._send(reply[1], b'{"error": {"message": "server error", "type": "server_error"}}')
                elif isinstance(reply, tuple) and reply[0] == "malformed":
                    self._send(200, b'{"choices": [ this is not json')
                elif body.get("stream"):
                    self._stream(reply)
                else:
                    completion = {
                        "id": "c1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "m"),
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                    self._send(200, json.dumps(completion).encode())

            def _stream(self, reply: str) -> None:
                """Server-sent events, a few words per chunk, `stream_delay` apart."""
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                words = reply.split(" ")
                for start in range(0, len(words), 3):
                    piece = " ".join(words[start : start + 3]) + (" " if start + 3 < len(words) else "")
                    chunk = {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": "m",
                        "choices": [
                            {"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}
                        ],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(fake.stream_delay)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, *args: Any) -> None:
                """Quiet."""

        super().__init__(Handler, "/v1")
