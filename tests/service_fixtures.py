"""A running service (create_app on the embedded defaults) on a loopback port, with API keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from api.app import create_app
from api.keys import create_api_key
from api.settings import Settings

from .support import LoopbackServer


@dataclass
class Service:
    url: str
    app: object
    settings: Settings
    key: str
    other_key: str

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    data = tmp_path_factory.mktemp("service-data")
    server = LoopbackServer()
    settings = Settings(data_dir=Path(data), host="127.0.0.1", port=server.port, max_upload_bytes=2 * 1024 * 1024,
                        sweep_interval_s=0.3)
    app = create_app(settings)
    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "School A")
        other, _ = create_api_key(s, "Bank B")
    server.start(app)
    yield Service(server.url, app, settings, key, other)
    server.stop()
