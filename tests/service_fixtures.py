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

from .databases import BACKENDS, database_url
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


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, tmp_path_factory) -> Service:
    """The service on SQLite and on PostgreSQL: every test that uses it runs on both."""
    data = tmp_path_factory.mktemp(f"service-data-{request.param}")
    with database_url(request.param, Path(data)) as url:
        server = LoopbackServer()
        settings = Settings(data_dir=Path(data), host="127.0.0.1", port=server.port,
                            max_upload_bytes=2 * 1024 * 1024, sweep_interval_s=0.3, database_url=url)
        app = create_app(settings)
        with Session(app.state.engine) as s:
            key, _ = create_api_key(s, "School A")
            other, _ = create_api_key(s, "Bank B")
        server.start(app)
        yield Service(server.url, app, settings, key, other)
        server.stop()
        app.state.engine.dispose()
