"""Real HTTP servers for tests: any ASGI app under uvicorn on 127.0.0.1, in a thread; and a
webhook receiver standing in for a customer's endpoint."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: ASGIApp, *, lifespan: str = "on") -> Iterator[str]:
    """Serve `app` on a free local port until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan=lifespan, ws="none", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An ASGI webhook endpoint: records every request; answers 500 while `failures` last."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.failures = 0
        self._changed = threading.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with self._changed:
            self.received.append(Received(headers, body))
            status = 500 if self.failures > 0 else 204
            self.failures = max(0, self.failures - 1)
            self._changed.notify_all()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """The requests received once there are at least `count` (fails after `timeout`)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} requests arrived, expected {count}")
            return list(self.received)


@contextmanager
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A running receiver and its URL."""
    app = Receiver()
    with serve(app, lifespan="off") as base_url:
        yield app, f"{base_url}/hooks"
