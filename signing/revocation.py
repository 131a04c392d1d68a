"""Is a signer's certificate revoked? Asked before a signature is embedded: OCSP first, then the CRL.

Only answers whose signature verifies are used: an OCSP response signed by the issuing CA or by a responder
certificate it issued for OCSP signing, about this very certificate and current; a CRL signed by the issuing
CA and current. Anything else is not an answer, and with no answer the status is ``unknown``.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from signing.tls import shared_tls_context

__all__ = ["RevocationCheck", "RevocationStatus", "check_revocation"]

_SKEW = dt.timedelta(minutes=5)
_MAX_BYTES = 10 * 1024 * 1024


class RevocationStatus(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RevocationCheck:
    """What was found, and where."""

    status: RevocationStatus
    source: str
    """``OCSP <url>``, ``CRL <url>`` or ``none``."""
    detail: str
    """One line for the audit trail: the answer, or why no answer could be used."""
    revoked_at: dt.datetime | None = None


class _NoAnswer(Exception):
    """This responder or CRL gave nothing usable."""


def _uris(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ocsp_urls: list[str] = []
    crl_urls: list[str] = []
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp_urls = [
            d.access_location.value
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        ]
    except x509.ExtensionNotFound:
        pass
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        crl_urls = [
            n.value for dp in dps for n in dp.full_name or () if isinstance(n, x509.UniformResourceIdentifier)
        ]
    except x509.ExtensionNotFound:
        pass
    return [u for u in ocsp_urls if u.startswith(("http://", "https://"))], [
        u for u in crl_urls if u.startswith(("http://", "https://"))
    ]


def _signed_by(signature: bytes, tbs: bytes, hash_alg, key) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, tbs, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, tbs, ec.ECDSA(hash_alg))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _responder_key(resp: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime):
    """The key that must have signed ``resp``: the issuer's, or a delegated responder's it issued."""
    if _names_responder(resp, issuer):
        return issuer.public_key()
    for cand in resp.certificates:
        if not _names_responder(resp, cand) or cand.issuer != issuer.subject:
            continue
        if not _signed_by(
            cand.signature, cand.tbs_certificate_bytes, cand.signature_hash_algorithm, issuer.public_key()
        ):
            continue
        try:
            eku = cand.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        if not (cand.not_valid_before_utc - _SKEW <= now <= cand.not_valid_after_utc + _SKEW):
            continue
        return cand.public_key()
    raise _NoAnswer("the response is signed by no responder the issuing CA authorised")


def _names_responder(resp: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if resp.responder_name is not None:
        return resp.responder_name == cert.subject
    # byKey: SHA-1 of the subjectPublicKey bits, which is how a key identifier is derived (RFC 5280)
    return resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


async def _ask_ocsp(
    http: httpx.AsyncClient, url: str, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> RevocationCheck:
    nonce = secrets.token_bytes(16)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert, issuer, hashes.SHA1())  # the CertID hash every responder accepts
        .add_extension(x509.OCSPNonce(nonce), critical=False)
        .build()
    )
    try:
        r = await http.post(
            url,
            content=request.public_bytes(Encoding.DER),
            headers={"content-type": "application/ocsp-request"},
        )
    except httpx.HTTPError as exc:
        raise _NoAnswer(f"unreachable ({exc.__class__.__name__})") from None
    if r.status_code != 200 or len(r.content) > _MAX_BYTES:
        raise _NoAnswer(f"HTTP {r.status_code}")
    try:
        resp = ocsp.load_der_ocsp_response(r.content)
    except ValueError:
        raise _NoAnswer("not an OCSP response") from None
    if resp.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise _NoAnswer(f"responder answered {resp.response_status.name}")
    key = _responder_key(resp, issuer, now)
    if not _signed_by(resp.signature, resp.tbs_response_bytes, resp.signature_hash_algorithm, key):
        raise _NoAnswer("the response signature does not verify")
    try:
        echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        echoed = None
    if echoed is not None and echoed != nonce:
        raise _NoAnswer("the response answers another request (nonce)")
    for single in resp.responses:
        if single.serial_number != cert.serial_number or single.issuer_key_hash != request.issuer_key_hash:
            continue
        if single.this_update_utc > now + _SKEW:
            raise _NoAnswer("the response is dated in the future")
        if single.next_update_utc is not None and single.next_update_utc < now - _SKEW:
            raise _NoAnswer("the response is out of date")
        source = f"OCSP {url}"
        if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
            return RevocationCheck(RevocationStatus.GOOD, source, f"{source}: good")
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            at = single.revocation_time_utc
            return RevocationCheck(RevocationStatus.REVOKED, source, f"{source}: revoked at {at}", at)
        return RevocationCheck(RevocationStatus.UNKNOWN, source, f"{source}: the responder does not know it")
    raise _NoAnswer("the response is about another certificate")


async def _check_crl(
    http: httpx.AsyncClient, url: str, cert: x509.Certificate, issuer: x509.Certificate, now: dt.datetime
) -> RevocationCheck:
    try:
        r = await http.get(url)
    except httpx.HTTPError as exc:
        raise _NoAnswer(f"unreachable ({exc.__class__.__name__})") from None
    if r.status_code != 200 or len(r.content) > _MAX_BYTES:
        raise _NoAnswer(f"HTTP {r.status_code}")
    try:
        crl = (
            x509.load_pem_x509_crl(r.content)
            if r.content.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(r.content)
        )
    except ValueError:
        raise _NoAnswer("not a CRL") from None
    key = issuer.public_key()
    if (
        crl.issuer != issuer.subject
        or not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
        or not crl.is_signature_valid(key)
    ):
        raise _NoAnswer("the CRL is not signed by the certificate's issuer")
    if crl.last_update_utc > now + _SKEW:
        raise _NoAnswer("the CRL is dated in the future")
    if crl.next_update_utc is not None and crl.next_update_utc < now - _SKEW:
        raise _NoAnswer("the CRL is out of date")
    source = f"CRL {url}"
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return RevocationCheck(RevocationStatus.GOOD, source, f"{source}: not listed")
    at = entry.revocation_date_utc
    return RevocationCheck(RevocationStatus.REVOKED, source, f"{source}: revoked at {at}", at)


async def check_revocation(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    timeout_s: float = 10.0,
    now: dt.datetime | None = None,
) -> RevocationCheck:
    """The revocation status of ``cert`` (issued by ``issuer``): each OCSP responder it names, then each CRL.

    Never raises for an unreachable or unusable source; with no usable answer the status is ``unknown`` and
    ``detail`` says what was tried.
    """
    now = now or dt.datetime.now(dt.UTC)
    ocsp_urls, crl_urls = _uris(cert)
    tried: list[str] = []
    async with httpx.AsyncClient(
        timeout=timeout_s, follow_redirects=False, verify=shared_tls_context()
    ) as http:
        for url in ocsp_urls:
            try:
                found = await _ask_ocsp(http, url, cert, issuer, now)
            except _NoAnswer as exc:
                tried.append(f"OCSP {url}: {exc}")
                continue
            if found.status is not RevocationStatus.UNKNOWN:
                return found
            tried.append(found.detail)
        for url in crl_urls:
            try:
                return await _check_crl(http, url, cert, issuer, now)
            except _NoAnswer as exc:
                tried.append(f"CRL {url}: {exc}")
    detail = "; ".join(tried) or "the certificate names no OCSP responder and no CRL"
    return RevocationCheck(RevocationStatus.UNKNOWN, "none", detail)
