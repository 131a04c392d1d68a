"""HTTP face of the sandbox PKI: CA certificates, CRLs, OCSP and an RFC 3161 TSA."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Request, Response

from signing.sandbox.pki import SandboxPki

_DER_CERT = "application/pkix-cert"


def pki_router(get_pki: Callable[[], SandboxPki]) -> APIRouter:
    """Routes serving ``get_pki()``; mount them where the PKI's ``base_url`` points."""
    router = APIRouter(tags=["sandbox PKI"])

    @router.get("/root.crt")
    def root_certificate() -> Response:
        return Response(get_pki().cert_der("root"), media_type=_DER_CERT)

    @router.get("/ca.crt")
    def ca_certificate() -> Response:
        return Response(get_pki().cert_der("ca"), media_type=_DER_CERT)

    @router.get("/root.pem")
    def root_pem() -> Response:
        return Response(get_pki().root_pem(), media_type="application/x-pem-file")

    @router.get("/ca.crl")
    def ca_crl() -> Response:
        return Response(get_pki().crl("ca"), media_type="application/pkix-crl")

    @router.get("/root.crl")
    def root_crl() -> Response:
        return Response(get_pki().crl("root"), media_type="application/pkix-crl")

    @router.post("/ocsp")
    async def ocsp(request: Request) -> Response:
        body = await request.body()
        answer = await asyncio.to_thread(get_pki().ocsp_response, body[:65536])  # signing: off the loop
        return Response(answer, media_type="application/ocsp-response")

    @router.post("/tsa")
    async def tsa(request: Request) -> Response:
        body = await request.body()
        answer = await asyncio.to_thread(get_pki().timestamp_response, body[:65536])
        return Response(answer, media_type="application/timestamp-reply")

    return router
