"""Build the verification test corpus with the test PKI: signed files at each level, and tampered ones."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from asn1crypto import keys as asn1_keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing.model import PadesLevel, RemoteMode, SignOptions
from signing.pades import finish_with_raw_signature, prepare_for_signing
from signing.sandbox.pki import SANDBOX_POLICY_OID, IssuedCertificate, SandboxPki
from signing.sandbox.remote_signer import SimulatedSigner
from signing.services import SigningServices
from signing.trust import ProfileKind, RecognitionInterval, TrustList, TrustProfile

from .conftest import asn1


async def sign(
    src: Path,
    out: Path,
    pki: SandboxPki,
    issued: IssuedCertificate,
    level: PadesLevel,
    services: SigningServices,
    field_name: str | None = None,
) -> Path:
    """Sign ``src`` in hash mode (PAdES baseline) through the signing core, as the service does."""
    prepared = out.with_name(out.stem + ".prepared.pdf")
    options = SignOptions(
        mode=RemoteMode.HASH, level=level, signer_certificate_der=issued.cert_der, field_name=field_name
    )
    record = await prepare_for_signing(src, prepared, options)
    phone = SimulatedSigner(issued.certificate, issued.private_key, [pki.issuing_ca])
    signature = phone.sign_hash(record.to_be_signed)
    await finish_with_raw_signature(record, prepared, out, signature, issued.cert_der, services)
    prepared.unlink(missing_ok=True)
    return out


def recognized_trust(
    pki: SandboxPki, policy_prefix: str = "2.999.344.1", kind: ProfileKind = ProfileKind.RECOGNIZED
) -> TrustList:
    """A trust list whose one profile plays a recognized certificate type, rooted at the test PKI."""
    profile = TrustProfile(
        id="test-recognized",
        name="test recognized certificate type",
        root=asn1(pki.root),
        kind=kind,
        issuing_ca_names=("iAM Smart-Cert Sandbox CA",),
        policy_oid_prefixes=(policy_prefix,),
        recognition=(RecognitionInterval(dt.datetime(2000, 1, 1, tzinfo=dt.UTC)),),
        required_key_usage=("digital_signature",),
    )
    return TrustList(profiles=(profile,), version="test")


def shipped_trust(pki: SandboxPki, data_dir: Path) -> TrustList:
    """The shipped certs/trust-list.toml, with the test PKI's root where the sandbox root would be."""
    target = data_dir / "sandbox" / "pki"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pki.directory / "root.cert.pem", target / "root.cert.pem")
    return TrustList.load(data_dir=data_dir)


def issue_without_signing_usage(pki: SandboxPki, name: str) -> IssuedCertificate:
    """A certificate of the test CA whose key usage is keyEncipherment only."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"), x509.NameAttribute(NameOID.COMMON_NAME, name)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(pki.issuing_ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(SANDBOX_POLICY_OID), None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier(f"{pki.base_url}/ocsp"),
                    )
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.keys["ca"].public_key()), critical=False
        )
        .sign(pki.keys["ca"], hashes.SHA256())
    )
    return IssuedCertificate(cert, key)


# ---------------------------------------------------------------------------------------------- tampering


def flip_signed_byte(src: Path, out: Path) -> Path:
    """Change one byte of page content, inside the first signed range."""
    data = bytearray(src.read_bytes())
    at = data.index(b"iamsign test letter")
    data[at] = ord("I")
    out.write_bytes(bytes(data))
    return out


def alter_signature_value(src: Path, out: Path) -> Path:
    """Flip one hex digit inside the signature value of the first signature's CMS (/Contents)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    with open(src, "rb") as f:
        emb = PdfFileReader(f).embedded_signatures[0]
        _, gap_start, gap_end, _ = (int(v) for v in emb.byte_range)
        sig_hex = emb.signer_info["signature"].native.hex()
    data = bytearray(src.read_bytes())
    hex_text = bytes(data[gap_start:gap_end]).decode("ascii").lower()
    pos = gap_start + hex_text.index(sig_hex) + 40
    data[pos] = ord("0") if data[pos] != ord("0") else ord("1")
    out.write_bytes(bytes(data))
    return out


def _first_page(writer: IncrementalPdfFileWriter):
    return writer.root["/Pages"]["/Kids"][0]


def change_page_content(src: Path, out: Path) -> Path:
    """An incremental update that replaces the first page's content stream."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        page_ref = w.root["/Pages"].raw_get("/Kids")[0]
        page = page_ref.get_object()
        stream = generic.StreamObject(stream_data=b"BT /F1 14 Tf 72 760 Td (PAY 1,000,000 HKD) Tj ET")
        page[pdf_name("/Contents")] = w.add_object(stream)
        w.update_container(page)
        w.write_in_place()
    return out


def add_annotation(src: Path, out: Path) -> Path:
    """An incremental update that adds a text annotation (a comment) to the first page."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        page = w.root["/Pages"].raw_get("/Kids")[0].get_object()
        annot = w.add_object(
            generic.DictionaryObject(
                {
                    pdf_name("/Type"): pdf_name("/Annot"),
                    pdf_name("/Subtype"): pdf_name("/Text"),
                    pdf_name("/Rect"): generic.ArrayObject(
                        [generic.NumberObject(v) for v in (100, 100, 120, 120)]
                    ),
                    pdf_name("/Contents"): generic.TextStringObject("not what was signed"),
                }
            )
        )
        page[pdf_name("/Annots")] = generic.ArrayObject([annot])
        w.update_container(page)
        w.write_in_place()
    return out


def simple_signer(test_pki) -> signers.SimpleSigner:
    """pyHanko's in-process signer with the test PKI's default signer key."""
    return _simple_signer(test_pki.pki, test_pki.signer)


def _simple_signer(pki: SandboxPki, issued: IssuedCertificate) -> signers.SimpleSigner:
    key = asn1_keys.PrivateKeyInfo.load(
        issued.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return signers.SimpleSigner(
        signing_cert=asn1(issued.certificate),
        signing_key=key,
        cert_registry=SimpleCertificateStore.from_certs([asn1(pki.issuing_ca)]),
    )


async def certify(
    src: Path,
    out: Path,
    pki: SandboxPki,
    issued: IssuedCertificate,
    permissions: MDPPerm = MDPPerm.NO_CHANGES,
) -> Path:
    """A certification (author) signature with DocMDP ``permissions``, made with pyHanko directly."""
    signer = _simple_signer(pki, issued)
    meta = signers.PdfSignatureMetadata(
        field_name="Certification",
        certify=True,
        docmdp_permissions=permissions,
        md_algorithm="sha256",
        subfilter=SigSeedSubFilter.PADES,
    )
    with open(src, "rb") as inf, open(out, "w+b") as outf:  # noqa: ASYNC230 - a test helper
        await signers.async_sign_pdf(IncrementalPdfFileWriter(inf), meta, signer=signer, output=outf)
    return out


def add_empty_signature_field(src: Path, out: Path) -> Path:
    """An incremental update adding an empty signature field (form change: not allowed under NO_CHANGES)."""
    shutil.copyfile(src, out)
    with open(out, "r+b") as f:
        w = IncrementalPdfFileWriter(f)
        fields.append_signature_field(w, fields.SigFieldSpec("Later", on_page=0, box=(300, 300, 400, 350)))
        w.write_in_place()
    return out


def truncate(src: Path, out: Path, keep: float = 0.6) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out
