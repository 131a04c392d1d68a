"""How the simulated iAM Smart signs for a user: a raw hash signature or a complete PDF CMS.

Simulator choices (see docs/iamsmart-sandbox.md and the protocol doc §12.1):

* ``SHA256withRSA``: RSASSA-PKCS1-v1_5 with SHA-256 over the Base64-decoded ``hashCode`` bytes.
* ``NONEwithRSA``: ``hashCode`` must decode to 32 bytes, signed as a SHA-256 digest inside a DigestInfo
  (so the value verifies as sha256WithRSA); ``none_with_rsa_digestinfo=False`` signs the raw 32 bytes
  instead, like Java's NONEwithRSA.
* ``pdfSignature``: a detached CMS over ``docDigest`` with contentType, messageDigest, signingTime and
  signing-certificate-v2, carrying the leaf and the issuing CA; an RFC 3161 token only if a TSA is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pyhanko.sign import signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

__all__ = ["SimulatedSigner", "UnsupportedHashError"]


class UnsupportedHashError(ValueError):
    """The bytes cannot be signed with the asked ``sigAlgo`` (iAM Smart answers D20003)."""


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


class SimulatedSigner:
    """Signs with one user's key as the sandbox's iAM Smart would."""

    def __init__(
        self, certificate: x509.Certificate, private_key: rsa.RSAPrivateKey, chain: Sequence[x509.Certificate]
    ) -> None:
        self.certificate = certificate
        self.private_key = private_key
        self.chain = list(chain)

    def sign_hash(self, data: bytes, sig_algo: str = "SHA256withRSA", *, none_with_rsa_digestinfo: bool = True) -> bytes:
        """A raw PKCS#1 v1.5 signature value, as iAM Smart's hash signing returns it."""
        if sig_algo == "SHA256withRSA":
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if sig_algo == "NONEwithRSA":
            if len(data) != 32:
                raise UnsupportedHashError("NONEwithRSA needs a 32-byte SHA-256 digest")
            if none_with_rsa_digestinfo:
                return self.private_key.sign(data, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            return _raw_pkcs1_sign(self.private_key, data)
        raise UnsupportedHashError(f"sigAlgo {sig_algo} is not supported by the sandbox")

    async def sign_pdf_digest(
        self, doc_digest: bytes, signing_time: dt.datetime, timestamper: TimeStamper | None = None
    ) -> bytes:
        """A detached CMS SignedData over a /ByteRange digest (iAM Smart's ``pdfSignature``)."""
        if len(doc_digest) != 32:
            raise UnsupportedHashError("docDigest must be a 32-byte SHA-256 digest")
        key_info = asn1_keys.PrivateKeyInfo.load(
            self.private_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cert = _asn1_cert(self.certificate)
        simple = signers.SimpleSigner(
            signing_cert=cert,
            signing_key=key_info,
            cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(c) for c in self.chain[:1]]),
        )
        ci = await simple.async_sign(
            doc_digest,
            "sha256",
            use_pades=False,
            timestamper=timestamper,
            signed_attr_settings=PdfCMSSignedAttributes(signing_time=signing_time),
        )
        return ci.dump()


def _raw_pkcs1_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 padding around ``data`` with no DigestInfo (Java NONEwithRSA)."""
    k = (key.key_size + 7) // 8
    block = b"\x00\x01" + b"\xff" * (k - len(data) - 3) + b"\x00" + data
    d = key.private_numbers().d
    n = key.public_key().public_numbers().n
    return pow(int.from_bytes(block, "big"), d, n).to_bytes(k, "big")
