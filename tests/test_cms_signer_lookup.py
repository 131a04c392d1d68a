"""Finding the signer's certificate in a CMS: the fast DER comparison never changes what is found."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.flows.certificate_status import cms_signer_certificate
from signing.cms import find_signer_certificate


def _certificate(serial: int, issuer_cn: str = "Sandbox CA") -> asn1_x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"signer {serial}")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _signed_data(certs: list[asn1_x509.Certificate], issuer: asn1_x509.Name, serial: int):
    sid = asn1_cms.SignerIdentifier(
        name="issuer_and_serial_number", value={"issuer": issuer, "serial_number": serial}
    )
    sd = asn1_cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data"},
            "certificates": certs,
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": sid,
                    "digest_algorithm": {"algorithm": "sha256"},
                    "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                    "signature": b"\x00",
                }
            ],
        }
    )
    return asn1_cms.SignedData.load(sd.dump()), sid


def test_the_named_certificate_is_found_among_others():
    other, mine = _certificate(7), _certificate(8)
    sd, sid = _signed_data([other, mine], mine.issuer, 8)
    assert find_signer_certificate(sd, sid).dump() == mine.dump()
    cms_der = asn1_cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump()
    assert cms_signer_certificate(cms_der) == mine.dump()


def test_an_issuer_encoded_differently_but_equal_still_matches():
    mine = _certificate(8)
    printable = asn1_x509.Name.build({"common_name": "Sandbox CA"}, use_printable=True)
    assert printable.dump() != mine.issuer.dump() and printable == mine.issuer  # same Name, other DER
    sd, sid = _signed_data([mine], printable, 8)
    assert find_signer_certificate(sd, sid).dump() == mine.dump()


@pytest.mark.parametrize("issuer_cn, serial", [("Sandbox CA", 9), ("Another CA", 8)])
def test_another_serial_or_issuer_matches_nothing(issuer_cn, serial):
    mine = _certificate(8)
    sd, sid = _signed_data([mine], asn1_x509.Name.build({"common_name": issuer_cn}), serial)
    assert find_signer_certificate(sd, sid) is None
