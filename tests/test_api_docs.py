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


# --- the OpenAPI schema: security, examples, errors ----------------------------------------------------------

ENVELOPE = "#/components/schemas/ErrorEnvelope"


@pytest.fixture(scope="module")
def schema(service) -> dict:
    with httpx.Client(base_url=service.url, timeout=30) as c:
        return c.get("/openapi.json").json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield f"{method.upper()} {path}", op


def test_schema_declares_the_bearer_scheme_on_every_keyed_route(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["apiKey"]["description"],
    }
    keyed = {name for name, op in operations(schema) if op.get("security") == [{"apiKey": []}]}
    assert "POST /v1/documents" in keyed and "GET /v1/batches/{batch_id}" in keyed
    assert "POST /v1/verifications" not in keyed and "GET /healthz" not in keyed
    for name in keyed:
        assert name.split(" ")[1].startswith("/v1/"), name


def test_bearer_dependency_keeps_the_error_envelope(service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
            r = c.get("/v1/signing-requests", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", headers
            assert "Bearer <api key>" in r.json()["error"]["message"]
        r = c.get("/v1/signing-requests", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and "unknown or revoked" in r.json()["error"]["message"]
        r = c.get("/v1/signing-requests", headers={"Authorization": f"bearer  {service.key}"})
        assert r.status_code == 200


def test_every_operation_has_a_tag_described_at_the_top(schema):
    described = {t["name"] for t in schema["tags"]}
    for name, op in operations(schema):
        assert op.get("tags") and set(op["tags"]) <= described, name


def test_every_request_body_has_an_example(schema):
    bodies = 0
    for name, op in operations(schema):
        for ctype, media in op.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            assert "example" in media or "examples" in media, f"{name} {ctype}"
            if ctype == "multipart/form-data":
                assert media["schema"]["properties"]["file"]["format"] == "binary", name
    assert bodies >= 4  # documents, verifications, signing requests, batches
    example = next(
        m["example"]
        for n, op in operations(schema)
        if n == "POST /v1/signing-requests"
        for m in op["requestBody"]["content"].values()
    )
    assert example["signer"] == {"hkid": "A123456(3)"} and example["level"] == "B-LTA"


def test_every_error_answer_is_documented_with_the_envelope(schema):
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    detail = schema["components"]["schemas"]["ErrorDetail"]
    assert envelope["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert set(detail["required"]) == {"code", "message"}
    for name, op in operations(schema):
        responses = op["responses"]
        errors = {s for s in responses if s[0] in "45"}
        assert "500" in errors, name
        if op.get("security"):
            assert "401" in errors, name
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in errors, name
        for status in errors:
            content = responses[status].get("content", {})
            if set(content) == {"text/html"}:  # a browser page (iAM Smart's redirect)
                continue
            assert content["application/json"]["schema"] == {"$ref": ENVELOPE}, f"{name} {status}"
    by_name = dict(operations(schema))
    assert {"404", "409"} <= set(by_name["POST /v1/signing-requests/{request_id}/cancel"]["responses"])
    assert {"413", "415", "422"} <= set(by_name["POST /v1/documents"]["responses"])
    assert "429" in by_name["POST /v1/verifications"]["responses"]
