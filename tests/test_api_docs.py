"""The API documentation works with no network: /docs and /redoc reference only the service's own files."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from .service_fixtures import running_service

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']|\b(https?://[^\s"'<>]+)""")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("docs")) as svc:
        yield svc


def referenced(html: str) -> list[str]:
    return [next(g for g in m.groups() if g) for m in ASSET.finditer(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_page_references_no_external_host(service, page):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        r = c.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        refs = referenced(r.text)
        assert refs, "the page loads nothing: the check below would pass vacuously"
        for ref in refs:
            parts = urlsplit(urljoin(service.url + page, ref))
            assert parts.netloc == urlsplit(service.url).netloc, f"{page} references {ref}"
            asset = c.get(parts.path)
            assert asset.status_code == 200, f"{ref} -> {asset.status_code}"
            assert asset.content, ref


def test_docs_bundle_is_served_locally(service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        js = c.get("/static/api-docs/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        assert c.get("/openapi.json").json()["info"]["title"] == "iamsign"
