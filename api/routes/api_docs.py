"""``/docs`` (Swagger UI) and ``/redoc``: fastapi-offline's bundled files, the inline script nonced.

fastapi-offline serves the assets at ``/static/api-docs`` (no CDN); these pages are its own, with the
request's CSP nonce (``api.edge.headers``) on the one inline ``<script>`` each has.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

__all__ = ["STATIC_URL", "router"]

STATIC_URL = "/static/api-docs"

router = APIRouter(include_in_schema=False)


def _nonced(page: HTMLResponse, request: Request) -> HTMLResponse:
    nonce = getattr(request.state, "csp_nonce", "")
    body = bytes(page.body)
    for tag in (b"script", b"style"):
        body = body.replace(b"<%s>" % tag, b'<%s nonce="%s">' % (tag, nonce.encode()))
    return HTMLResponse(body, status_code=page.status_code)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root, app = request.scope.get("root_path", ""), request.app
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=app.swagger_ui_oauth2_redirect_url,
        swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
        swagger_ui_parameters=app.swagger_ui_parameters,
    )
    return _nonced(page, request)


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect(request: Request) -> HTMLResponse:
    return _nonced(get_swagger_ui_oauth2_redirect_html(), request)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root, app = request.scope.get("root_path", ""), request.app
    page = get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
        with_google_fonts=False,
        redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
    )
    return _nonced(page, request)
