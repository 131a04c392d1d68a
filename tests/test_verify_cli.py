"""``iamsign verify``: exit codes 0/1/2, the JSON report and the JSON error shape, in a real process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.generate import simple_pdf
from signing.model import PadesLevel

from .verify_fixtures import sign

REPO = Path(__file__).resolve().parents[1]


def iamsign(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "verify", *args, "--data-dir", str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def files(test_pki, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("verify-cli")
    letter = simple_pdf(d / "letter.pdf")
    signed = asyncio.run(
        sign(letter, d / "lta.pdf", test_pki.pki, test_pki.signer, PadesLevel.B_LTA, test_pki.services())
    )
    garbage = d / "garbage.pdf"
    garbage.write_bytes(b"\x00\x01 definitely not a PDF")
    return {
        "letter": letter,
        "lta": signed,
        "garbage": garbage,
        "root": test_pki.pki.directory / "root.cert.pem",
        "dir": d,
    }


def test_valid_file_exits_0(files):
    r = iamsign(
        str(files["lta"]), "--trust", str(files["root"]), "--offline", "--json", data_dir=files["dir"]
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["valid"] is True
    assert report["signatures"][0]["indication"] == "TOTAL-PASSED"
    assert report["signatures"][0]["pades_level"] == "B-LTA"


def test_text_report_in_traditional_chinese(files):
    r = iamsign(
        str(files["lta"]),
        "--trust",
        str(files["root"]),
        "--offline",
        "--lang",
        "zh-Hant",
        data_dir=files["dir"],
    )
    assert r.returncode == 0, r.stderr
    assert "簽署核實報告" in r.stdout and "本核實不判斷的事項" in r.stdout


def test_sandbox_root_from_the_shipped_trust_list(files, test_pki, tmp_path):
    (tmp_path / "sandbox" / "pki").mkdir(parents=True)
    (tmp_path / "sandbox" / "pki" / "root.cert.pem").write_bytes(files["root"].read_bytes())
    r = iamsign(str(files["lta"]), "--offline", "--json", data_dir=tmp_path)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["signatures"][0]["trust_profile"] == "iamsign-sandbox-iamsmart-cert"


def test_untrusted_exits_1(files, tmp_path):
    r = iamsign(str(files["lta"]), "--offline", data_dir=tmp_path)  # no sandbox root there: nothing trusted
    assert r.returncode == 1
    assert "NO_CERTIFICATE_CHAIN_FOUND" in r.stdout


def test_no_signature_exits_1(files):
    r = iamsign(str(files["letter"]), "--json", data_dir=files["dir"])
    assert r.returncode == 1
    assert json.loads(r.stdout)["valid"] is False and json.loads(r.stdout)["signatures"] == []


def test_not_a_pdf_exits_2_with_json_error(files):
    r = iamsign(str(files["garbage"]), "--json", data_dir=files["dir"])
    assert r.returncode == 2
    assert json.loads(r.stdout) == {
        "error": {"code": "not_a_pdf", "message": json.loads(r.stdout)["error"]["message"]}
    }
    assert "not a PDF" in json.loads(r.stdout)["error"]["message"]
    assert len(r.stderr.strip().splitlines()) == 1


def test_not_a_pdf_exits_2_text(files):
    r = iamsign(str(files["garbage"]), data_dir=files["dir"])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("iamsign verify: ") and len(r.stderr.strip().splitlines()) == 1


def test_bad_at_exits_2(files):
    r = iamsign(str(files["lta"]), "--at", "yesterday", "--json", data_dir=files["dir"])
    assert r.returncode == 2
    assert json.loads(r.stdout)["error"]["code"] == "invalid_option"


def test_at_in_the_past_validates_then(files):
    r = iamsign(
        str(files["lta"]),
        "--trust",
        str(files["root"]),
        "--at",
        "2001-01-01T00:00:00Z",
        "--json",
        data_dir=files["dir"],
    )
    assert r.returncode == 1
    s = json.loads(r.stdout)["signatures"][0]
    assert s["indication"] != "TOTAL-PASSED"
    assert json.loads(r.stdout)["validation_time"].startswith("2001-01-01")
