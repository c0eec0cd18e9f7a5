"""A loopback stand-in for an OpenAI-compatible ``/v1/chat/completions`` endpoint (127.0.0.1 only, no network).

It checks the bearer key, answers the first ``fail_first`` requests with HTTP 429 (``Retry-After: 0``), records
every request (without the key) and the most requests it saw in flight at once, and answers with
``responder(messages) -> str``. Hostile modes: ``fail_after=N`` answers N requests, then HTTP 400 to every later
one (a paid judge failing mid-batch); ``echo_auth=True`` answers HTTP 400 whose body echoes the ``Authorization``
header (an endpoint that leaks the key into error messages).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class StandIn:
    def __init__(
        self,
        key: str,
        responder: Callable[[list[dict]], str],
        fail_first: int = 0,
        always_status: int | None = None,
        delay_s: float = 0.02,
        fail_after: int | None = None,
        echo_auth: bool = False,
    ):
        self.key, self.responder, self.fail_first = key, responder, fail_first
        self.fail_after, self.echo_auth = fail_after, echo_auth
        self.always_status, self.delay_s = always_status, delay_s
        self.requests: list[dict] = []  # {"status", "model", "n_messages"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                with standin._lock:
                    standin.in_flight += 1
                    standin.max_in_flight = max(standin.max_in_flight, standin.in_flight)
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                    time.sleep(standin.delay_s)
                    status, payload, headers = standin._answer(self.path, self.headers.get("authorization"), body)
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    data = json.dumps(payload).encode()
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with standin._lock:
                        standin.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, path: str, auth: str | None, body: dict) -> tuple[int, dict, dict]:
        with self._lock:
            n = len(self.requests)
            if path != "/v1/chat/completions":
                status = 404
            elif auth != f"Bearer {self.key}":
                status = 401
            elif self.echo_auth:
                status = 400
            elif self.always_status is not None:
                status = self.always_status
            elif self.fail_after is not None and sum(r["status"] == 200 for r in self.requests) >= self.fail_after:
                status = 400
            elif n < self.fail_first:
                status = 429
            else:
                status = 200
            self.requests.append(
                {"status": status, "model": body.get("model"), "n_messages": len(body.get("messages", []))}
            )
        if status == 429:
            return 429, {"error": {"message": "rate limited"}}, {"retry-after": "0"}
        if status == 400 and self.echo_auth:
            return 400, {"error": {"message": f"bad request; you sent Authorization: {auth}"}}, {}
        if status != 200:
            return status, {"error": {"message": f"status {status}"}}, {}
        content = self.responder(body["messages"])
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}, {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
