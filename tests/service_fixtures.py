"""A running service (create_app on the embedded defaults) on a loopback port, with API keys."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from api.app import create_app
from api.settings import Settings
from api.store.keys import create_api_key

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
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key or self.key}"}, timeout=30
        )


@contextlib.contextmanager
def running_service(data: Path, backend: str = "sqlite", **settings_kw) -> Iterator[Service]:
    """create_app on ``backend`` served on a loopback port, with two organisations' keys."""
    with database_url(backend, Path(data)) as url:
        server = LoopbackServer()
        kw = {"max_upload_bytes": 2 * 1024 * 1024, "sweep_interval_s": 0.3}
        kw.update(settings_kw)
        settings = Settings(data_dir=Path(data), host="127.0.0.1", port=server.port, database_url=url, **kw)
        app = create_app(settings)
        with Session(app.state.engine) as s:
            key, _ = create_api_key(s, "School A")
            other, _ = create_api_key(s, "Bank B")
        server.start(app)
        try:
            yield Service(server.url, app, settings, key, other)
        finally:
            server.stop()
            app.state.engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, tmp_path_factory) -> Service:
    """The service on SQLite and on PostgreSQL: every test that uses it runs on both."""
    with running_service(tmp_path_factory.mktemp(f"service-data-{request.param}"), request.param) as svc:
        yield svc
