"""Test helpers: a real uvicorn server on a loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import uvicorn


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1 at a free port; ``url`` is known before the app is built."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, app, access_log: bool = False) -> LoopbackServer:
        config = uvicorn.Config(
            app,
            log_level="info" if access_log else "warning",
            lifespan="on",
            access_log=access_log,
            proxy_headers=False,  # as `iamsign serve`: X-Forwarded-For is the service's to judge
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
