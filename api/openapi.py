"""What the OpenAPI schema says beyond the routes themselves: error answers, upload bodies, tags.

Routes list the errors particular to them with ``responses=errors(404, 409)``; ``install_openapi`` adds the
ones every operation shares (401 where the API key is needed, 422 where there is input, 500) and makes every
error answer point at :class:`api.errors.ErrorEnvelope`, FastAPI's own validation-error model never being
what the service answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.errors import ErrorEnvelope

__all__ = ["PDF_UPLOAD", "TAGS", "errors", "install_openapi"]

_DESCRIPTIONS = {
    400: "The request cannot be read or iAM Smart refused it",
    401: "Missing, unknown or revoked API key",
    404: "No such resource (another organisation's ids do not exist for you)",
    409: "Not possible in the resource's current status",
    413: "Larger than the upload limit",
    415: "Not a PDF, or not sent as multipart/form-data",
    422: "Invalid input: a field, an HKID, or a damaged or encrypted PDF",
    410: "It was deleted (by its organisation or by retention)",
    429: "Too many requests; see Retry-After",
    500: "Unexpected error (logged)",
    503: "The service's database is unavailable for a moment; retry after Retry-After",
    507: "No room to store the file now; retry later",
}

TAGS = [
    {"name": "documents", "description": "Upload PDFs and read them back."},
    {"name": "signing requests", "description": "Ask one signer to sign one document with iAM Smart+."},
    {"name": "signers", "description": "Enrol a signer once, so hash-mode signatures are PAdES baseline."},
    {"name": "envelopes", "description": "Several signers of one document, in order."},
    {"name": "batches", "description": "One approval for up to 1000 documents (iAM Smart bulk signing)."},
    {"name": "verifications", "description": "Verify any signed PDF (no API key needed)."},
    {"name": "signers", "description": "Enrol a signer once, so hash-mode signing is PAdES baseline."},
    {"name": "webhooks", "description": "The key that signs the webhooks sent to you."},
    {"name": "iAM Smart login", "description": "Log a signer in with iAM Smart for account signing."},
    {"name": "iAM Smart callbacks", "description": "Where iAM Smart answers (called by iAM Smart only)."},
    {"name": "service", "description": "Health, readiness and metrics."},
    {"name": "sandbox PKI", "description": "The sandbox root, CA and TSA certificates."},
]

# A PDF sent as multipart field "file" (the routes stream it themselves, so FastAPI cannot infer this).
PDF_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "description": "The PDF."}},
                },
                "example": {"file": "letter.pdf"},
            }
        },
    }
}

_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own error statuses, each answered with the error envelope."""
    return {s: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[s]} for s in statuses}


def _error_response(status: int) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": _ENVELOPE_REF}}}


def _complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    envelope = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs", {}))
    components["ErrorEnvelope"] = envelope
    for path_item in schema.get("paths", {}).values():
        for op in path_item.values():
            responses = op.setdefault("responses", {})
            if op.get("security"):
                responses.setdefault("401", _error_response(401))
            given = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema")
            if (op.get("parameters") or op.get("requestBody")) and given != _ENVELOPE_REF:
                responses["422"] = _error_response(422)
            responses.setdefault("500", _error_response(500))
            responses.setdefault("503", _error_response(503))
            for media in op.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                # an optional body is anyOf [its model, null]: the example is still its model's
                refs = [schema.get("$ref", "")] + [s.get("$ref", "") for s in schema.get("anyOf", [])]
                ref = next((r for r in refs if r), "")
                examples = components.get(ref.rsplit("/", 1)[-1], {}).get("examples")
                if examples and "example" not in media:
                    media["example"] = examples[0]  # Swagger UI fills the body editor with it
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed schema (computed once, like FastAPI's)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _complete(build())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
