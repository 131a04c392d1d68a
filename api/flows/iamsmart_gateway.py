"""This service's connection to iAM Smart: client configuration, the trust list of iAM Smart-Cert issuers,
and the signing services (TSA, anchors) the core needs. In sandbox mode all three point at the built-in
sandbox, and the service registers itself there on start."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from api.flows.iamsmart_setup import client_config
from api.settings import Settings
from signing.iamsmart.config import ClientConfig
from signing.services import SigningServices

__all__ = ["IamSmartSetup", "build_iamsmart_setup", "issued_by_trusted_issuer"]


@dataclass(frozen=True)
class IamSmartSetup:
    client_config: ClientConfig
    cert_issuers: tuple[x509.Certificate, ...]
    """CAs that issue iAM Smart-Cert: a returned certificate must be signed by one of them."""
    signing_services: SigningServices
    tsa_url: str | None = None

    def services_spec(self) -> dict:
        """The signing services as plain data, for a worker process to rebuild them."""
        return {
            "tsa_url": self.tsa_url,
            "roots": [c.dump() for c in self.signing_services.trust_roots],
            "others": [c.dump() for c in self.signing_services.other_certs],
        }


def _load_pems(paths: list[Path]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for p in paths:
        certs.extend(x509.load_pem_x509_certificates(Path(p).read_bytes()))
    return certs


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def build_iamsmart_setup(settings: Settings, sandbox_pki=None) -> IamSmartSetup:
    """Client configuration (``iamsmart_setup.client_config``) plus the trust the service signs with.

    With the sandbox mounted, its issuing CA is an iAM Smart-Cert issuer, its root an anchor and its TSA
    the default time-stamping authority.
    """
    config = client_config(settings)
    issuers = _load_pems(settings.iamsmart_cert_issuer_files)
    roots = _load_pems(settings.trust_root_files)
    tsa_url = settings.tsa_url
    if sandbox_pki is not None:
        issuers.append(sandbox_pki.issuing_ca)
        roots.append(sandbox_pki.root)
        tsa_url = tsa_url or f"{settings.base_url}/sandbox/pki/tsa"
    if tsa_url:
        services = SigningServices.with_tsa_url(
            tsa_url, trust_roots=[_asn1(c) for c in roots], other_certs=[_asn1(c) for c in issuers]
        )
    else:
        services = SigningServices(
            trust_roots=[_asn1(c) for c in roots], other_certs=[_asn1(c) for c in issuers]
        )
    return IamSmartSetup(
        client_config=config, cert_issuers=tuple(issuers), signing_services=services, tsa_url=tsa_url
    )


@functools.lru_cache(maxsize=4096)
def issued_by_trusted_issuer(
    cert_der: bytes, issuers: tuple[x509.Certificate, ...]
) -> x509.Certificate | None:
    """The issuer among ``issuers`` whose key signed ``cert_der``, or ``None``.

    Anyone can encrypt a callback to our public KEK, so a signature that verifies proves nothing until its
    certificate is shown to come from an iAM Smart-Cert issuer.
    """
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return None
    for issuer in issuers:
        if cert.issuer != issuer.subject:
            continue
        key = issuer.public_key()
        digest = cert.signature_hash_algorithm
        if digest is None:  # Ed25519/Ed448 signatures: not made by an RSA or EC issuer key
            continue
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), digest)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
            else:
                continue
        except InvalidSignature:
            continue
        return issuer
    return None
