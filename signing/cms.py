"""CMS work around a remote signer: check an external CMS, wrap a raw signature into a SignerInfo.

pyHanko embeds whatever CMS it is given; these checks make sure nothing that does not verify ever
reaches a PDF.
"""

from __future__ import annotations

import hashlib

from asn1crypto import algos, cms, core, x509
from cryptography.exceptions import InvalidSignature
from pyhanko.sign.attributes import TSTProvider
from pyhanko.sign.general import SigningError as PyHankoSigningError
from pyhanko.sign.signers.pdf_cms import ExternalSigner
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator, SignatureValidationContext

from .errors import (
    CertificateMismatchError,
    CertificateMissingError,
    DigestMismatchError,
    InvalidSignatureError,
    MalformedCmsError,
    SigningError,
    TimestampError,
)
from .model import SignatureProfile
from .verify.encoding import cms_der_problem, signed_attrs_der_problem

__all__ = [
    "RSA_SHA256",
    "CheckedCms",
    "add_signature_timestamp",
    "build_signed_data",
    "check_external_cms",
    "find_signer_certificate",
    "has_signature_timestamp",
    "load_certificate",
    "verify_raw_signature",
]

#: The signature mechanism of iAM Smart's hash signing (RSASSA-PKCS1-v1_5 with SHA-256).
RSA_SHA256 = algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"})


class CheckedCms:
    """A detached CMS SignedData that passed ``check_external_cms``."""

    def __init__(
        self, content_info: cms.ContentInfo, signer_info: cms.SignerInfo, cert: x509.Certificate
    ) -> None:
        self.content_info = content_info
        self.signer_info = signer_info
        self.signer_cert = cert

    def dump(self) -> bytes:
        return self.content_info.dump(force=True)


def load_certificate(der: bytes) -> x509.Certificate:
    """Parse a DER certificate, or raise ``CertificateMissingError`` saying it is unusable."""
    if not der:
        raise CertificateMissingError("the remote signer returned no certificate")
    try:
        cert = x509.Certificate.load(der)
        cert.native  # noqa: B018 - force a full parse
        return cert
    except Exception as exc:  # asn1crypto raises many kinds on garbage
        raise CertificateMissingError(f"the returned certificate is not valid DER X.509: {exc}") from exc


def _attr(signed_attrs: cms.CMSAttributes, name: str) -> list:
    return [a["values"] for a in signed_attrs if a["type"].native == name]


def find_signer_certificate(sd: cms.SignedData, sid: cms.SignerIdentifier) -> x509.Certificate | None:
    """The certificate in ``sd`` that the signer identifier ``sid`` names, if ``sd`` carries it.

    The serial first and the issuer's DER before asn1crypto's normalised Name comparison, which costs
    about a millisecond a certificate (for every document of a batch); equal DER is an equal Name.
    """
    for choice in sd["certificates"] or ():
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if cert.serial_number == ias["serial_number"].native and (
                cert.issuer.dump() == ias["issuer"].dump() or cert.issuer == ias["issuer"]
            ):
                return cert
        elif sid.name == "subject_key_identifier" and cert.key_identifier == sid.chosen.native:
            return cert
    return None


def check_external_cms(
    cms_der: bytes, document_digest: bytes, md_algorithm: str, profile: SignatureProfile
) -> CheckedCms:
    """Check a CMS made by the remote signer before it is embedded.

    It must be a detached SignedData with one signer, signed attributes whose messageDigest equals the
    /ByteRange digest, the signer certificate inside it, a signature that verifies with that
    certificate, and content that fits the reserved /SubFilter. asn1crypto parses lazily, so whatever
    part of a malformed CMS is touched first raises: every such error becomes :class:`MalformedCmsError`.
    """
    try:
        return _check_external_cms(cms_der, document_digest, md_algorithm, profile)
    except SigningError:
        raise
    except Exception as exc:  # asn1crypto raises many kinds on garbage
        raise MalformedCmsError(f"the signature is not a readable CMS SignedData: {exc}") from exc


def _check_external_cms(
    cms_der: bytes, document_digest: bytes, md_algorithm: str, profile: SignatureProfile
) -> CheckedCms:
    ci = cms.ContentInfo.load(cms_der, strict=True)
    problem = cms_der_problem(cms_der) or signed_attrs_der_problem(ci["content"]["signer_infos"][0])
    if problem:  # the verifier fails such a signature (RFC 5652 §5.4): never publish one
        raise MalformedCmsError(f"{problem}; a verifier would reject this signature")
    if ci["content_type"].native != "signed_data":
        raise MalformedCmsError(f"expected CMS SignedData, got {ci['content_type'].native}")
    sd: cms.SignedData = ci["content"]
    signer_infos = sd["signer_infos"]
    if len(signer_infos) != 1:
        raise MalformedCmsError(f"expected exactly one SignerInfo, found {len(signer_infos)}")
    if sd["encap_content_info"]["content"].native is not None:
        raise MalformedCmsError("the CMS is not detached: it encapsulates content (a PDF signature must not)")
    si: cms.SignerInfo = signer_infos[0]
    signed_attrs = si["signed_attrs"]
    if not signed_attrs:
        raise MalformedCmsError("the CMS has no signed attributes")
    digest_alg = si["digest_algorithm"]["algorithm"].native
    if digest_alg != md_algorithm:
        raise MalformedCmsError(f"the CMS digest algorithm is {digest_alg}, expected {md_algorithm}")
    digests = _attr(signed_attrs, "message_digest")
    if len(digests) != 1:
        raise MalformedCmsError("the CMS must carry exactly one messageDigest attribute")
    if digests[0][0].native != document_digest:
        raise DigestMismatchError(
            "the CMS messageDigest does not equal the /ByteRange digest of the prepared document "
            "(it was made for another document or another revision)"
        )
    cert = find_signer_certificate(sd, si["sid"])
    if cert is None:
        raise CertificateMissingError("the signer's certificate is not inside the CMS")
    try:
        DefaultSignatureValidator().validate_signature(
            si["signature"].native,
            signed_attrs.untag().dump(),
            cert.public_key,
            si["signature_algorithm"],
            SignatureValidationContext(contextual_md_algorithm=digest_alg),
        )
    except InvalidSignature as exc:
        raise InvalidSignatureError(
            "the CMS signature does not verify with the certificate inside it"
        ) from exc
    except Exception as exc:  # unsupported mechanism etc.
        raise InvalidSignatureError(f"the CMS signature cannot be verified: {exc}") from exc

    has_ess = bool(
        _attr(signed_attrs, "signing_certificate_v2") or _attr(signed_attrs, "signing_certificate")
    )
    has_signing_time = bool(_attr(signed_attrs, "signing_time"))
    if profile is SignatureProfile.PADES_BASELINE and (not has_ess or has_signing_time):
        raise MalformedCmsError(
            "the CMS does not fit /ETSI.CAdES.detached: it needs signing-certificate-v2 and no signingTime"
        )
    return CheckedCms(ci, si, cert)


def verify_raw_signature(signature: bytes, signed_attrs_der: bytes, cert: x509.Certificate) -> None:
    """Check that a raw (PKCS#1 v1.5, SHA-256) signature value covers the DER signed attributes."""
    try:
        DefaultSignatureValidator().validate_signature(
            signature, signed_attrs_der, cert.public_key, RSA_SHA256
        )
    except InvalidSignature as exc:
        raise InvalidSignatureError(
            "the returned signature does not verify as SHA256withRSA over the signed attributes with the "
            "returned certificate (wrong document, wrong key, or a sigAlgo that signed other bytes)"
        ) from exc
    except Exception as exc:
        raise InvalidSignatureError(f"the returned signature cannot be verified: {exc}") from exc


def check_certificate_matches(expected_der: bytes | None, cert: x509.Certificate) -> None:
    """Refuse a certificate other than the one the signed attributes name (signing-certificate-v2)."""
    if (
        expected_der is not None
        and hashlib.sha256(expected_der).digest() != hashlib.sha256(cert.dump()).digest()
    ):
        raise CertificateMismatchError(
            "the signer's certificate differs from the one the signed attributes were built for; "
            "prepare again without a known certificate (or with the new one) and ask for a new approval"
        )


async def build_signed_data(
    signed_attrs: cms.CMSAttributes,
    signature: bytes,
    cert: x509.Certificate,
    chain: list[x509.Certificate],
    timestamper: TimeStamper | None,
) -> bytes:
    """Wrap a verified raw signature into a CMS SignedData, with a signature timestamp if asked."""
    signer = ExternalSigner(
        signing_cert=cert,
        cert_registry=SimpleCertificateStore.from_certs([cert, *chain]),
        signature_value=signature,
        signature_mechanism=RSA_SHA256,
    )
    try:
        ci = await signer.async_sign_prescribed_attributes(
            "sha256", signed_attrs=signed_attrs, timestamper=timestamper
        )
    except PyHankoSigningError as exc:
        raise TimestampError(f"the signature timestamp could not be obtained: {exc}") from exc
    except Exception as exc:  # network errors of the TSA client
        if timestamper is not None:
            raise TimestampError(f"the time-stamping authority did not answer: {exc}") from exc
        raise
    return ci.dump()


def has_signature_timestamp(signer_info: cms.SignerInfo) -> bool:
    return any(
        a["type"].native == "signature_time_stamp_token" for a in (signer_info["unsigned_attrs"] or ())
    )


async def add_signature_timestamp(cms_der: bytes, timestamper: TimeStamper) -> bytes:
    """Add an RFC 3161 signature timestamp over the signature value, as an unsigned attribute.

    Every byte but the unsigned attributes is kept as received: re-encoding the signed attributes (which
    asn1crypto would sort and normalise) could change what the signature value covers.
    """
    ci = cms.ContentInfo.load(cms_der)
    sd = ci["content"]
    si = sd["signer_infos"][0]
    try:
        attr = await TSTProvider(
            digest_algorithm="sha256", data_to_ts=si["signature"].native, timestamper=timestamper
        ).get_attribute()
    except Exception as exc:  # aiohttp and TSA protocol errors
        raise TimestampError(f"the time-stamping authority did not answer: {exc}") from exc
    unsigned = list(si["unsigned_attrs"]) if si["unsigned_attrs"].native else []
    unsigned_der = cms.CMSAttributes([*unsigned, attr]).dump()
    si_der = _tlv(0x30, _children(si, {"unsigned_attrs": b"\xa1" + unsigned_der[1:]}))
    infos_der = _tlv(0x31, si_der + b"".join(other.dump() for other in list(sd["signer_infos"])[1:]))
    sd_der = _tlv(0x30, _children(sd, {"signer_infos": infos_der}))
    return _tlv(0x30, ci["content_type"].dump() + _tlv(0xA0, sd_der))


def _tlv(first: int, contents: bytes) -> bytes:
    """A DER tag-length-value with the one-byte tag ``first``."""
    n = len(contents)
    if n < 0x80:
        return bytes([first, n]) + contents
    size = (n.bit_length() + 7) // 8
    return bytes([first, 0x80 | size]) + n.to_bytes(size, "big") + contents


def _children(value: core.Sequence, replace: dict[str, bytes]) -> bytes:
    """The encoded fields of ``value`` as stored, with ``replace`` substituted (or appended, in order)."""
    out = []
    for name, _spec, _params in value._fields:
        if name in replace:
            out.append(replace[name])
        elif not isinstance(value[name], core.Void):
            out.append(value[name].dump())
    return b"".join(out)
