"""Issue 11 item 6: the shipped Hongkong Post roots and profiles, and where ``iamsign verify`` finds the
sandbox root.

The real roots' keys are not ours, so the matching tests put a test root (same names, same policy arc)
in place of each shipped root: what is tested is the profile's rule (chain, issuer, policy), not the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from signing.sandbox.pki import IssuedCertificate
from signing.trust import DEFAULT_TRUST_LIST, ProfileKind, TrustList
from signing.verify import VerifyOptions, verify_pdf_sync

from .conftest import asn1
from .verify_format_fixtures import detached_cms, handmade_signed_pdf, simple_signer

CERTS = DEFAULT_TRUST_LIST.parent / "hongkong-post"
REPO = Path(__file__).resolve().parents[1]
SHIPPED = {
    "root-ca-3.pem": "5a2fc03f0c83b090bbfa40604b0988446c7636183df9846e17101a447fb8efd6",
    "root-ca-1.pem": "f9e67d336c51002ac054c632022d66dda2e7e3fff10ad061ed31d8bbb410cfb2",
}
STORES = {
    "root-ca-3.pem": ["Hongkong_Post_Root_CA_3"],
    "root-ca-1.pem": ["Hongkong_Post_Root_CA_1"],
}


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    return pem.unarmor(data)[2] if pem.detect(data) else data


def _store_ders() -> dict[str, list[bytes]]:
    """Certificates of certifi's bundle and Debian's ca-certificates, by label, where installed."""
    found: dict[str, list[bytes]] = {}
    try:
        import certifi

        text = Path(certifi.where()).read_bytes()
        for block in text.split(b"# Label: ")[1:]:
            label = block.split(b"\n", 1)[0].strip().strip(b'"').decode().replace(" ", "_")
            found.setdefault(label, []).append(pem.unarmor(block[block.index(b"-----BEGIN") :])[2])
    except ImportError:
        pass
    for folder in (Path("/usr/share/ca-certificates/mozilla"), Path("/etc/ssl/certs")):
        for path in folder.glob("Hongkong_Post_Root_CA_*"):
            found.setdefault(path.stem, []).append(_der(path))
    return found


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_roots_are_the_public_ones(name):
    der = _der(CERTS / name)
    assert hashlib.sha256(der).hexdigest() == SHIPPED[name]
    stores = _store_ders()
    copies = [d for label in STORES[name] for d in stores.get(label, [])]
    if not copies:
        pytest.skip(f"neither certifi nor ca-certificates holds {name} here")
    assert all(hashlib.sha256(d).hexdigest() == SHIPPED[name] for d in copies)


def test_shipped_list_has_the_hongkong_post_profiles(tmp_path):
    trust = TrustList.load(data_dir=tmp_path)
    by_id = {p.id: p for p in trust.profiles}
    ca1, ca3 = by_id["hkpost-ecert-root-ca-1"], by_id["hkpost-iamsmart-cert-root-ca-3"]
    assert ca1.kind is ca3.kind is ProfileKind.RECOGNIZED
    assert hashlib.sha256(ca1.root.dump()).hexdigest() == SHIPPED["root-ca-1.pem"]
    assert hashlib.sha256(ca3.root.dump()).hexdigest() == SHIPPED["root-ca-3.pem"]
    for p in (ca1, ca3):
        assert p.policy_oid_prefixes == ("1.3.6.1.4.1.16030",)
        assert p.policy_matches(["1.3.6.1.4.1.16030.1.1.12"]) is True
        assert p.policy_matches(["1.3.6.1.4.1.16030.1.7.21"]) is False  # e-Cert (Server)
        assert p.policy_matches(["2.999.344.1.1"]) is False
    assert ca1.issuer_allowed("Hongkong Post e-Cert CA 1 - 15") and not ca1.issuer_allowed("Other CA")


# ---------------------------------------------------------------------------------------------- matching


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "HK"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Hongkong Post"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(subject, issuer, key, issuer_key, *, ca: bool, policy: str | None = None):
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(not ca, not ca, False, False, False, ca, ca, False, False), critical=True
        )
    )
    if policy:
        b = b.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier(policy), None)]),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def lookalike(tmp_path_factory):
    """A root standing in for Root CA 1, its 'Hongkong Post e-Cert CA 1 - 15', and signed files."""
    d = tmp_path_factory.mktemp("hkpost")
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    root_name, ca_name = _name("Hongkong Post Root CA 1"), _name("Hongkong Post e-Cert CA 1 - 15")
    root = _cert(root_name, root_name, keys[0], keys[0], ca=True)
    ca = _cert(ca_name, root_name, keys[1], keys[0], ca=True)
    files = {}
    for label, policy in (("personal", "1.3.6.1.4.1.16030.1.1.12"), ("server", "1.3.6.1.4.1.16030.1.7.21")):
        leaf = _cert(_name(f"e-Cert {label}"), ca_name, keys[2], keys[1], ca=False, policy=policy)
        signer = simple_signer(IssuedCertificate(leaf, keys[2]), [ca])
        files[label] = handmade_signed_pdf(d / f"{label}.pdf", detached_cms(signer))
    shipped = TrustList.load(data_dir=d)
    profile = next(p for p in shipped.profiles if p.id == "hkpost-ecert-root-ca-1")
    trust = TrustList(profiles=(replace(profile, root=asn1(root)),), version="test")
    return files, trust


def test_hongkong_post_lookalike_matches_the_profile(lookalike):
    files, trust = lookalike
    (s,) = verify_pdf_sync(files["personal"], VerifyOptions(trust=trust, offline=True)).signatures
    assert s.checks.recognized_ca is True and s.checks.certificate_policy is True, s.to_json()
    assert s.profile_id == "hkpost-ecert-root-ca-1"
    # Offline with no revocation data: never passed, however well it matches.
    assert s.indication.value == "INDETERMINATE" and s.checks.not_revoked is None


def test_server_certificate_under_the_arc_does_not_match(lookalike):
    files, trust = lookalike
    (s,) = verify_pdf_sync(files["server"], VerifyOptions(trust=trust, offline=True)).signatures
    assert s.checks.recognized_ca is False and s.checks.certificate_policy is False, s.to_json()
    assert s.indication.value == "INDETERMINATE"


# ---------------------------------------------------------------------------------------------- data folder


def _put_root(test_pki, data_dir: Path) -> None:
    (data_dir / "sandbox" / "pki").mkdir(parents=True)
    shutil.copyfile(test_pki.pki.directory / "root.cert.pem", data_dir / "sandbox" / "pki" / "root.cert.pem")


def _sandbox_loaded(trust: TrustList) -> bool:
    return any(p.id == "iamsign-sandbox-iamsmart-cert" for p in trust.profiles)


def test_sandbox_root_from_iamsign_data_dir(test_pki, tmp_path, monkeypatch):
    _put_root(test_pki, tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IAMSIGN_DATA_DIR", str(tmp_path / "elsewhere"))
    assert _sandbox_loaded(TrustList.load())


def test_sandbox_root_from_the_user_level_default(test_pki, tmp_path, monkeypatch):
    _put_root(test_pki, tmp_path / "xdg" / "iamsign")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # no ./data here
    monkeypatch.delenv("IAMSIGN_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert _sandbox_loaded(TrustList.load())


def test_cli_finds_the_user_level_root(test_pki, tmp_path):
    """``iamsign verify`` run from a folder with no ./data still recognizes a sandbox-signed file."""
    import asyncio

    from fixtures.generate import simple_pdf
    from signing.model import PadesLevel

    from .verify_fixtures import sign

    _put_root(test_pki, tmp_path / "xdg" / "iamsign")
    letter = simple_pdf(tmp_path / "letter.pdf")
    signed = asyncio.run(
        sign(
            letter, tmp_path / "lta.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_LTA, test_pki.services()
        )
    )
    (tmp_path / "cwd").mkdir()
    env = {k: v for k, v in __import__("os").environ.items() if k != "IAMSIGN_DATA_DIR"}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "verify", "--offline", "--json", str(signed)],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"iamsign-sandbox-iamsmart-cert"' in done.stdout
