"""The sandbox's own PKI: root, issuing CA ("iAM Smart-Cert" stand-in), OCSP responder, CRLs and a TSA.

Everything is generated with ``cryptography`` on first use and kept as PEM files in one folder (a data
folder at run time, a temporary folder in tests; never the repository). Revocations are kept in
``state.json`` with the moment they take effect, so that a movable clock can ask "was it revoked at T?".

The responders are plain functions from request bytes to response bytes; the HTTP side lives in
``api`` (the sandbox app) so that this module needs no web framework.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import core, tsp
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from ..files import atomic_write

__all__ = [
    "SANDBOX_POLICY_OID",
    "IssuedCertificate",
    "Revocation",
    "SandboxPki",
    "utcnow",
]

#: Certificate policy of the simulated iAM Smart-Cert. It sits under the ITU-T example arc (2.999),
#: never under Hongkong Post's real arc (1.3.6.1.4.1.16030).
SANDBOX_POLICY_OID = "2.999.344.1.1"

_FAR_PAST = dt.timedelta(days=1)
_ROOT_LIFETIME = dt.timedelta(days=365 * 20)
_CA_LIFETIME = dt.timedelta(days=365 * 10)
_LEAF_LIFETIME = dt.timedelta(days=365 * 3)
_CRL_LIFETIME = dt.timedelta(days=1)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware (UTC)."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, as the sandbox keeps it for a simulated user."""

    certificate: x509.Certificate
    """The issued certificate."""
    private_key: rsa.RSAPrivateKey
    """Its private key (held by the sandbox, which signs on the user's behalf)."""

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


@dataclass(frozen=True)
class Revocation:
    """A revocation entry: from ``revoked_at`` on, the certificate counts as revoked."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "key_compromise"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str, org: str = "iamsign sandbox") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class SandboxPki:
    """A small but complete PKI: root CA -> issuing CA -> signer certificates, plus OCSP, CRL and TSA.

    URLs baked into certificates (OCSP, CRL distribution points, CA issuers) point at ``base_url``,
    which must be where the sandbox's PKI routes are served (for example
    ``http://127.0.0.1:8000/sandbox/pki``).
    """

    ROLES = ("root", "ca", "ocsp", "tsa")

    def __init__(self, directory: Path, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.directory = Path(directory)
        self.clock = clock
        state = json.loads((self.directory / "state.json").read_text())
        self.base_url: str = state["base_url"]
        self._revocations = {
            int(r["serial"]): Revocation(
                int(r["serial"]), dt.datetime.fromisoformat(r["revoked_at"]), r["reason"]
            )
            for r in state.get("revocations", [])
        }
        self.certs: dict[str, x509.Certificate] = {}
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        for role in self.ROLES:
            self.certs[role] = x509.load_pem_x509_certificate(
                (self.directory / f"{role}.cert.pem").read_bytes()
            )
            key = serialization.load_pem_private_key((self.directory / f"{role}.key.pem").read_bytes(), None)
            assert isinstance(key, rsa.RSAPrivateKey)
            self.keys[role] = key
        self._timestamper: _SandboxTimeStamper | None = None

    # ------------------------------------------------------------------ creation

    @classmethod
    def exists(cls, directory: Path) -> bool:
        return (Path(directory) / "state.json").is_file()

    @classmethod
    def open_or_create(
        cls, directory: Path, base_url: str, clock: Callable[[], dt.datetime] = utcnow
    ) -> SandboxPki:
        """Load the PKI kept in ``directory``, creating it on first use."""
        if not cls.exists(directory):
            cls.create(directory, base_url, now=clock())
        return cls(directory, clock)

    @classmethod
    def create(cls, directory: Path, base_url: str, now: dt.datetime | None = None) -> None:
        """Generate a fresh PKI into ``directory`` (private keys mode 0600)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        now = now or utcnow()
        base_url = base_url.rstrip("/")
        root_key, ca_key, ocsp_key, tsa_key = (_new_key() for _ in range(4))
        root_name = _name("iAM Smart Sandbox Root CA")
        ca_name = _name("iAM Smart-Cert Sandbox CA")
        not_before = now - _FAR_PAST

        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(now + _ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        ca = (
            _issued_by(root, root_key, ca_name, ca_key.public_key(), not_before, now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(
                x509.CRLDistributionPoints(
                    [
                        x509.DistributionPoint(
                            [x509.UniformResourceIdentifier(f"{base_url}/root.crl")], None, None, None
                        )
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityInformationAccess(
                    [
                        x509.AccessDescription(
                            x509.AuthorityInformationAccessOID.CA_ISSUERS,
                            x509.UniformResourceIdentifier(f"{base_url}/root.crt"),
                        )
                    ]
                ),
                critical=False,
            )
            .sign(root_key, hashes.SHA256())
        )
        ocsp_cert = (
            _issued_by(
                ca,
                ca_key,
                _name("iAM Smart Sandbox OCSP Responder"),
                ocsp_key.public_key(),
                not_before,
                now + _CA_LIFETIME,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(non_repudiation=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=True)
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        tsa_cert = (
            _issued_by(
                ca,
                ca_key,
                _name("iAM Smart Sandbox Time-Stamping Authority"),
                tsa_key.public_key(),
                not_before,
                now + _CA_LIFETIME,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(non_repudiation=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(*_revocation_pointers(base_url))
            .add_extension(*_aia(base_url))
            .sign(ca_key, hashes.SHA256())
        )
        for role, cert, key in (
            ("root", root, root_key),
            ("ca", ca, ca_key),
            ("ocsp", ocsp_cert, ocsp_key),
            ("tsa", tsa_cert, tsa_key),
        ):
            atomic_write(directory / f"{role}.cert.pem", cert.public_bytes(serialization.Encoding.PEM))
            atomic_write(
                directory / f"{role}.key.pem",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                private=True,
            )
        atomic_write(directory / "state.json", json.dumps({"base_url": base_url, "revocations": []}).encode())

    # ------------------------------------------------------------------ certificates

    @property
    def root(self) -> x509.Certificate:
        return self.certs["root"]

    @property
    def issuing_ca(self) -> x509.Certificate:
        return self.certs["ca"]

    @property
    def tsa_cert(self) -> x509.Certificate:
        return self.certs["tsa"]

    def issue_signer(
        self,
        common_name: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = _LEAF_LIFETIME,
        key: rsa.RSAPrivateKey | None = None,
        policy_oid: str = SANDBOX_POLICY_OID,
        non_repudiation: bool = True,
        issuer: str = "ca",
        subject_serial: str | None = None,
    ) -> IssuedCertificate:
        """Issue a signing certificate shaped like the simulated iAM Smart-Cert.

        keyUsage digitalSignature + nonRepudiation, the sandbox policy OID, OCSP and CRL pointers.
        ``subject_serial`` adds a subject serialNumber (an opaque holder identifier, never an HKID).
        """
        key = key or _new_key()
        now = self.clock()
        start = not_before or (now - dt.timedelta(minutes=5))
        issuer_cert, issuer_key = self.certs[issuer], self.keys[issuer]
        subject = _name(common_name, "iamsign sandbox iAM Smart+ user")
        if subject_serial is not None:
            subject = x509.Name([*subject, x509.NameAttribute(NameOID.SERIAL_NUMBER, subject_serial)])
        cert = (
            _issued_by(issuer_cert, issuer_key, subject, key.public_key(), start, start + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(non_repudiation=non_repudiation), critical=True)
            .add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(policy_oid), None)]),
                critical=False,
            )
            .add_extension(*_revocation_pointers(self.base_url))
            .add_extension(*_aia(self.base_url))
            .sign(issuer_key, hashes.SHA256())
        )
        return IssuedCertificate(cert, key)

    # ------------------------------------------------------------------ revocation

    def revoke(self, serial: int, at: dt.datetime | None = None, reason: str = "key_compromise") -> None:
        """Record that ``serial`` is revoked from ``at`` (default: now) on; ``at`` may lie in the future."""
        at = at or self.clock()
        self._revocations[serial] = Revocation(serial, at, reason)
        self._save_state()

    def revocation_of(self, serial: int, at: dt.datetime | None = None) -> Revocation | None:
        """The revocation in force for ``serial`` at ``at`` (default: now), if any."""
        at = at or self.clock()
        rev = self._revocations.get(serial)
        return rev if rev is not None and rev.revoked_at <= at else None

    def _save_state(self) -> None:
        state = {
            "base_url": self.base_url,
            "revocations": [
                {"serial": str(r.serial), "revoked_at": r.revoked_at.isoformat(), "reason": r.reason}
                for r in self._revocations.values()
            ],
        }
        atomic_write(self.directory / "state.json", json.dumps(state, indent=1).encode())

    # ------------------------------------------------------------------ responders

    def crl(self, issuer: str = "ca") -> bytes:
        """A DER CRL of ``issuer`` ("ca" or "root") as of now, listing what is revoked by now."""
        now = self.clock()
        issuer_cert, issuer_key = self.certs[issuer], self.keys[issuer]
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer_cert.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + _CRL_LIFETIME)
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        )
        for rev in self._revocations.values():
            if rev.revoked_at <= now:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(rev.serial)
                    .revocation_date(rev.revoked_at)
                    .add_extension(x509.CRLReason(x509.ReasonFlags[rev.reason]), critical=False)
                    .build()
                )
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp_response(self, request_der: bytes) -> bytes:
        """Answer a DER OCSP request about a certificate of the issuing CA (delegated responder)."""
        try:
            req = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST
            ).public_bytes(serialization.Encoding.DER)
        ca = self.issuing_ca
        ca_key_hash = _key_hash(ca, req.hash_algorithm)
        if req.issuer_key_hash != ca_key_hash:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.UNAUTHORIZED
            ).public_bytes(serialization.Encoding.DER)
        now = self.clock()
        rev = self.revocation_of(req.serial_number, now)
        # The cert itself is not needed for the answer, only its serial; build a CertID from it.
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=req.issuer_name_hash,
            issuer_key_hash=req.issuer_key_hash,
            serial_number=req.serial_number,
            algorithm=req.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if rev else ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(seconds=5),
            next_update=now + dt.timedelta(hours=1),
            revocation_time=rev.revoked_at if rev else None,
            revocation_reason=x509.ReasonFlags[rev.reason] if rev else None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.certs["ocsp"]).certificates(
            [self.certs["ocsp"]]
        )
        for ext in req.extensions:
            if isinstance(ext.value, x509.OCSPNonce):
                builder = builder.add_extension(ext.value, critical=False)
        return builder.sign(self.keys["ocsp"], hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def timestamper(self) -> DummyTimeStamper:
        """A pyHanko time stamper that acts as this PKI's TSA, at the PKI clock's time (one per PKI)."""
        if self._timestamper is None:
            self._timestamper = _SandboxTimeStamper(
                self.keys["tsa"],
                lambda: self.clock(),
                tsa_cert=asn1_x509.Certificate.load(self.tsa_cert.public_bytes(serialization.Encoding.DER)),
                issuing_ca=asn1_x509.Certificate.load(
                    self.issuing_ca.public_bytes(serialization.Encoding.DER)
                ),
            )
        return self._timestamper

    def timestamp_response(self, request_der: bytes) -> bytes:
        """Answer an RFC 3161 TimeStampReq (DER) with a TimeStampResp (DER)."""
        try:
            req = tsp.TimeStampReq.load(request_der)
            req.native  # noqa: B018 - force a full parse so that garbage is refused here
        except Exception:  # noqa: BLE001 - asn1crypto raises many kinds on garbage
            # TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken OPTIONAL }; asn1crypto's class
            # insists on the token, so the rejection is wrapped by hand.
            status = tsp.PKIStatusInfo(
                {"status": "rejection", "fail_info": tsp.PKIFailureInfo({"bad_request"})}
            )
            return core.Sequence(contents=status.dump()).dump()
        return self.timestamper().request_tsa_response(req).dump()

    def cert_der(self, role: str) -> bytes:
        return self.certs[role].public_bytes(serialization.Encoding.DER)

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_key_usage(*, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issued_by(
    issuer_cert: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(min(not_after, issuer_cert.not_valid_after_utc))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )


def _revocation_pointers(base_url: str) -> tuple[x509.CRLDistributionPoints, bool]:
    dp = x509.DistributionPoint([x509.UniformResourceIdentifier(f"{base_url}/ca.crl")], None, None, None)
    return x509.CRLDistributionPoints([dp]), False


def _aia(base_url: str) -> tuple[x509.AuthorityInformationAccess, bool]:
    return (
        x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(f"{base_url}/ocsp"),
                ),
                x509.AccessDescription(
                    x509.AuthorityInformationAccessOID.CA_ISSUERS,
                    x509.UniformResourceIdentifier(f"{base_url}/ca.crt"),
                ),
            ]
        ),
        False,
    )


def _key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    spki = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)).public_key
    h = hashes.Hash(type(algorithm)())
    h.update(spki["public_key"].contents[1:])  # BIT STRING contents without the unused-bits byte
    return h.finalize()


class _SandboxTimeStamper(DummyTimeStamper):
    """pyHanko's dummy TSA with what does not change between tokens made once: the RSA key loaded (its
    own loads and checks it from DER on every token, some 40 ms), and the certificate set, the signer's
    id and the signing-certificate attribute encoded (rebuilt per token they copied every certificate,
    some 10 ms). The time is the PKI clock's at each request."""

    def __init__(
        self,
        signing_key: rsa.RSAPrivateKey,
        clock: Callable[[], dt.datetime],
        *,
        tsa_cert: asn1_x509.Certificate,
        issuing_ca: asn1_x509.Certificate,
    ) -> None:
        from pyhanko.sign.general import as_signing_certificate, simple_cms_attribute

        key_info = asn1_keys.PrivateKeyInfo.load(
            signing_key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        super().__init__(
            tsa_cert=tsa_cert,
            tsa_key=key_info,
            certs_to_embed=SimpleCertificateStore.from_certs([issuing_ca]),
        )
        self._signing_key = signing_key
        self._clock = clock
        # kept as DER and loaded again per token: asn1crypto copies or re-encodes a parsed value it is
        # handed (a whole certificate, for the certificate set), a freshly loaded one it takes as it is
        self._certificates = asn1_cms.CertificateSet([tsa_cert, issuing_ca]).dump()
        self._tsa_name = tsa_cert.subject.dump()
        self._tsa_general_name = asn1_x509.GeneralName(
            name="directory_name", value=asn1_x509.Name.load(self._tsa_name)
        ).dump()
        self._signer_id = asn1_cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value=asn1_cms.IssuerAndSerialNumber(
                {"issuer": tsa_cert.issuer, "serial_number": tsa_cert.serial_number}
            ),
        ).dump()
        self._signature_algorithm = asn1_cms.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}).dump()
        self._content_type_attribute = asn1_cms.CMSAttribute(
            {"type": "content_type", "values": ["tst_info"]}
        ).dump()
        self._signing_certificate = simple_cms_attribute(
            "signing_certificate", as_signing_certificate(tsa_cert)
        ).dump()

    def _build_tst_info(
        self, message_imprint: tsp.MessageImprint, dt: Any, req: tsp.TimeStampReq
    ) -> tsp.TSTInfo:
        from pyhanko.sign.timestamps.common_utils import get_nonce

        info = {
            "version": "v1",
            "policy": "1.3.6.1.4.1.4146.2.2",  # pyHanko's dummy TSA's policy
            "message_imprint": tsp.MessageImprint.load(message_imprint.dump()),
            "serial_number": get_nonce(),
            "gen_time": dt,
            "tsa": asn1_x509.GeneralName.load(self._tsa_general_name),
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"].native
        return tsp.TSTInfo(info)

    def request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        from pyhanko_certvalidator.util import get_pyca_cryptography_hash

        imprint = req["message_imprint"]
        md_algorithm = imprint["hash_algorithm"]["algorithm"].native
        at = self._clock()
        tst_info_data = self._build_tst_info(imprint, at, req).dump()
        md = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
        md.update(tst_info_data)
        signed_attrs = asn1_cms.CMSAttributes(
            [
                asn1_cms.CMSAttribute.load(self._content_type_attribute),
                asn1_cms.CMSAttribute(
                    {"type": "signing_time", "values": [asn1_cms.Time({"utc_time": core.UTCTime(at)})]}
                ),
                asn1_cms.CMSAttribute.load(self._signing_certificate),
                asn1_cms.CMSAttribute({"type": "message_digest", "values": [md.finalize()]}),
            ]
        )
        signature = self._signing_key.sign(
            signed_attrs.dump(), padding.PKCS1v15(), get_pyca_cryptography_hash(md_algorithm.upper())
        )
        digest_algorithm = asn1_cms.DigestAlgorithm({"algorithm": md_algorithm}).dump()
        signer_info = asn1_cms.SignerInfo(
            {
                "version": "v1",
                "sid": asn1_cms.SignerIdentifier.load(self._signer_id),
                "digest_algorithm": asn1_cms.DigestAlgorithm.load(digest_algorithm),
                "signature_algorithm": asn1_cms.SignedDigestAlgorithm.load(self._signature_algorithm),
                "signed_attrs": asn1_cms.CMSAttributes.load(signed_attrs.dump()),
                "signature": signature,
            }
        )
        signed_data = asn1_cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": asn1_cms.DigestAlgorithms.load(
                    asn1_cms.DigestAlgorithms((asn1_cms.DigestAlgorithm.load(digest_algorithm),)).dump()
                ),
                "encap_content_info": asn1_cms.EncapsulatedContentInfo(
                    {"content_type": "tst_info", "content": asn1_cms.ParsableOctetString(tst_info_data)}
                ),
                "certificates": asn1_cms.CertificateSet.load(self._certificates),
                "signer_infos": asn1_cms.SignerInfos.load(asn1_cms.SignerInfos([signer_info]).dump()),
            }
        )
        return tsp.TimeStampResp(
            {
                "status": tsp.PKIStatusInfo({"status": "granted"}),
                "time_stamp_token": asn1_cms.ContentInfo(
                    {"content_type": "signed_data", "content": signed_data}
                ),
            }
        )
