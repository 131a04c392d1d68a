"""How the simulated iAM Smart signs for a user: a raw hash signature or a complete PDF CMS.

Simulator choices (see docs/iamsmart-sandbox.md and the protocol doc §12.1):

* ``SHA256withRSA``: RSASSA-PKCS1-v1_5 with SHA-256 over the Base64-decoded ``hashCode`` bytes.
* ``NONEwithRSA``: ``hashCode`` must decode to 32 bytes, signed as a SHA-256 digest inside a DigestInfo
  (so the value verifies as sha256WithRSA); ``none_with_rsa_digestinfo=False`` signs the raw 32 bytes
  instead, like Java's NONEwithRSA.
* ``pdfSignature``: a detached CMS over ``docDigest`` with contentType, messageDigest, signingTime and
  signing-certificate-v2, carrying the leaf and the issuing CA; an RFC 3161 token only if a TSA is given.
* Bulk signing (:class:`PdfBatchSigner`): the same CMS, byte for byte, built from a template made once
  per batch by pyHanko (PKCS#1 v1.5 is deterministic), so 1000 documents cost 1000 RSA operations.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pyhanko.sign import signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes, SimpleSigner
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

__all__ = ["PdfBatchSigner", "SimulatedSigner", "UnsupportedHashError"]


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

    def sign_hash(
        self, data: bytes, sig_algo: str = "SHA256withRSA", *, none_with_rsa_digestinfo: bool = True
    ) -> bytes:
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

    async def pdf_batch_signer(self, signing_time: dt.datetime) -> PdfBatchSigner:
        """A signer for many docDigests at one signing time (bulk signing); see :class:`PdfBatchSigner`."""
        return await PdfBatchSigner.create(self, signing_time)


class _TemplateSigner(SimpleSigner):
    """A pyHanko signer that records the signed-attribute bytes and returns a placeholder signature."""

    def __init__(self, placeholder: bytes, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.placeholder = placeholder
        self.signed_bytes: bytes | None = None

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        self.signed_bytes = data
        return self.placeholder


class PdfBatchSigner:
    """``pdfSignature`` values for many docDigests, identical to :meth:`SimulatedSigner.sign_pdf_digest`.

    pyHanko builds one CMS with a random placeholder digest and signature; each document then costs a
    byte substitution and one RSA signature over its signed attributes. Synchronous and thread-safe, so
    bulk signing can run it in a worker thread. No timestamp token (the caller falls back to
    ``sign_pdf_digest`` when ``pdf_tst`` is set).
    """

    def __init__(
        self, key: rsa.RSAPrivateKey, template: bytes, attrs: bytes, digest_marker: bytes, sig_marker: bytes
    ) -> None:
        self._key = key
        self._cms_head, self._cms_mid, self._cms_tail = _split3(template, digest_marker, sig_marker)
        self._attrs_head, self._attrs_tail = _split2(attrs, digest_marker)

    @classmethod
    async def create(cls, signer: SimulatedSigner, signing_time: dt.datetime) -> PdfBatchSigner:
        digest_marker = secrets.token_bytes(32)
        sig_marker = secrets.token_bytes((signer.private_key.key_size + 7) // 8)
        template_signer = _TemplateSigner(
            sig_marker,
            signing_cert=_asn1_cert(signer.certificate),
            signing_key=None,
            cert_registry=SimpleCertificateStore.from_certs([_asn1_cert(c) for c in signer.chain[:1]]),
        )
        ci = await template_signer.async_sign(
            digest_marker,
            "sha256",
            use_pades=False,
            signed_attr_settings=PdfCMSSignedAttributes(signing_time=signing_time),
        )
        assert template_signer.signed_bytes is not None
        return cls(signer.private_key, ci.dump(), template_signer.signed_bytes, digest_marker, sig_marker)

    def sign(self, doc_digest: bytes) -> bytes:
        """The DER detached CMS over one 32-byte docDigest."""
        if len(doc_digest) != 32:
            raise UnsupportedHashError("docDigest must be a 32-byte SHA-256 digest")
        signature = self._key.sign(
            self._attrs_head + doc_digest + self._attrs_tail, padding.PKCS1v15(), hashes.SHA256()
        )
        return self._cms_head + doc_digest + self._cms_mid + signature + self._cms_tail


def _split2(blob: bytes, marker: bytes) -> tuple[bytes, bytes]:
    if blob.count(marker) != 1:
        raise RuntimeError("the CMS template does not hold its marker exactly once")
    head, _, tail = blob.partition(marker)
    return head, tail


def _split3(blob: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes, bytes]:
    head, rest = _split2(blob, first)
    mid, tail = _split2(rest, second)
    return head, mid, tail


def _raw_pkcs1_sign(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 padding around ``data`` with no DigestInfo (Java NONEwithRSA)."""
    k = (key.key_size + 7) // 8
    block = b"\x00\x01" + b"\xff" * (k - len(data) - 3) + b"\x00" + data
    d = key.private_numbers().d
    n = key.public_key().public_numbers().n
    return pow(int.from_bytes(block, "big"), d, n).to_bytes(k, "big")
