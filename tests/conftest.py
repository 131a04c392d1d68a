"""Shared fixtures: a test PKI served over loopback HTTP (OCSP, CRL, TSA) and a simulated phone."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from api.sandbox.pki import pki_router
from fixtures.generate import simple_pdf
from signing.sandbox.pki import IssuedCertificate, SandboxPki
from signing.sandbox.remote_signer import SimulatedSigner
from signing.services import SigningServices

from .service_fixtures import service  # noqa: F401 - the running service, for every test module
from .support import LoopbackServer

_FUZZ_SEED = pytest.StashKey[int]()

SHARED = Path(__file__).resolve().parents[2] / "shared"


def pytest_configure(config):
    """New fuzz cases every run: a fresh Hypothesis seed unless ``--hypothesis-seed`` replays one."""
    from hypothesis import core

    seed = config.getoption("--hypothesis-seed", default=None)
    if seed is None:
        seed = secrets.randbelow(2**32)
    core.global_force_seed = int(seed)
    config.stash[_FUZZ_SEED] = int(seed)


def pytest_report_header(config):
    seed = config.stash.get(_FUZZ_SEED, None)
    return f"fuzz seed: {seed} (replay a failure with --hypothesis-seed={seed})"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed again at the end, where it is seen even under ``-q``, and the fuzz cases that ran."""
    from .fuzzing import CASES_RUN

    terminalreporter.write_line(pytest_report_header(config))
    if CASES_RUN:
        per_test = ", ".join(f"{name} {n}" for name, n in sorted(CASES_RUN.items()))
        terminalreporter.write_line(f"fuzz cases run: {sum(CASES_RUN.values())} ({per_test})")


def asn1(cert) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass
class TestPki:
    pki: SandboxPki
    url: str
    signer: IssuedCertificate
    phone: SimulatedSigner

    @property
    def tsa_url(self) -> str:
        return f"{self.url}/tsa"

    def services(self, **kw) -> SigningServices:
        kw.setdefault("trust_roots", [asn1(self.pki.root)])
        kw.setdefault("other_certs", [asn1(self.pki.issuing_ca)])
        return SigningServices.with_tsa_url(self.tsa_url, **kw)

    def new_signer(self, name: str) -> tuple[IssuedCertificate, SimulatedSigner]:
        issued = self.pki.issue_signer(name)
        return issued, SimulatedSigner(issued.certificate, issued.private_key, [self.pki.issuing_ca])


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory) -> TestPki:
    server = LoopbackServer()
    base = f"{server.url}/pki"
    pki = SandboxPki.open_or_create(tmp_path_factory.mktemp("pki"), base)
    app = FastAPI()
    app.include_router(pki_router(lambda: pki), prefix="/pki")
    server.start(app)
    signer = pki.issue_signer("CHAN Tai Man 陳大文")
    yield TestPki(
        pki, base, signer, SimulatedSigner(signer.certificate, signer.private_key, [pki.issuing_ca])
    )
    server.stop()


@pytest.fixture
def letter(tmp_path) -> Path:
    return simple_pdf(tmp_path / "letter.pdf", pages=2)
