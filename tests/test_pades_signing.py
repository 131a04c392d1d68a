"""Round trips through the deferred signing core: both remote modes, all four levels, several signers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel

from signing.model import Appearance, PadesLevel, RemoteMode, SigAlgo, SignatureProfile, SignOptions

from .pades_helpers import sign_with_phone, validate

REPO = Path(__file__).resolve().parents[1]

MODES = {
    # name: (options, expected profile)
    "pdf": ({"mode": RemoteMode.PDF}, SignatureProfile.PKCS7_DETACHED),
    "hash-known-cert": (
        {"mode": RemoteMode.HASH, "sig_algo": SigAlgo.SHA256_WITH_RSA},
        SignatureProfile.PADES_BASELINE,
    ),
    "hash-known-cert-none-with-rsa": (
        {"mode": RemoteMode.HASH, "sig_algo": SigAlgo.NONE_WITH_RSA},
        SignatureProfile.PADES_BASELINE,
    ),
    "hash-unknown-cert": ({"mode": RemoteMode.HASH}, SignatureProfile.PKCS7_DETACHED),
}


def _reader(path: Path) -> PdfFileReader:
    """A pyHanko reader over the file's bytes (read whole: these test files are small)."""
    return PdfFileReader(io.BytesIO(path.read_bytes()))


def _options(test_pki, mode: str, level: PadesLevel, **extra) -> SignOptions:
    kwargs, _ = MODES[mode]
    kwargs = dict(kwargs, level=level, **extra)
    if mode.startswith("hash-known-cert"):
        kwargs["signer_certificate_der"] = test_pki.signer.cert_der
    return SignOptions(**kwargs)


@pytest.mark.parametrize("level", list(PadesLevel), ids=lambda lv: lv.value)
@pytest.mark.parametrize("mode", list(MODES))
async def test_round_trip_every_mode_and_level(test_pki, letter, tmp_path, mode, level):
    out = tmp_path / "signed.pdf"
    result = await sign_with_phone(test_pki, letter, out, _options(test_pki, mode, level, reason="approval"))
    expected_profile = MODES[mode][1]

    # what the core says it made, without overclaiming
    assert result.profile is expected_profile
    assert result.achieved_level == (level if expected_profile is SignatureProfile.PADES_BASELINE else None)
    assert result.label.startswith("PAdES") == (expected_profile is SignatureProfile.PADES_BASELINE)
    assert result.has_signature_timestamp == level.needs_timestamp
    assert result.has_dss == level.needs_dss
    assert result.has_document_timestamp == level.needs_document_timestamp
    assert out.stat().st_size == result.size

    # what pyHanko finds in the file
    v = await validate(test_pki, out)
    (status,) = v.statuses
    assert status.intact and status.valid and status.trusted, status.summary()
    assert status.bottom_line, status.summary()
    assert v.subfilters == [
        "/ETSI.CAdES.detached"
        if expected_profile is SignatureProfile.PADES_BASELINE
        else "/adbe.pkcs7.detached"
    ]
    assert (status.timestamp_validity is not None) == level.needs_timestamp
    if status.timestamp_validity is not None:
        assert status.timestamp_validity.trusted
    assert v.has_dss == level.needs_dss
    assert len(v.doc_timestamps) == (1 if level.needs_document_timestamp else 0)
    for ts in v.doc_timestamps:
        assert ts.intact and ts.valid and ts.trusted
    if level.needs_dss:
        # LT/LTA files carry what an offline verifier needs
        offline = await validate(test_pki, out, offline=True)
        assert offline.statuses[0].bottom_line, offline.statuses[0].summary()
    # the source was never touched
    assert b"/ByteRange" not in letter.read_bytes()


async def test_pades_signature_has_ess_and_no_signing_time(test_pki, letter, tmp_path):
    out = tmp_path / "signed.pdf"
    await sign_with_phone(test_pki, letter, out, _options(test_pki, "hash-known-cert", PadesLevel.B_B))
    (emb,) = _reader(out).embedded_signatures
    attr_types = {a["type"].native for a in emb.signer_info["signed_attrs"]}
    assert "signing_certificate_v2" in attr_types
    assert "signing_time" not in attr_types


async def test_second_and_third_signers_keep_earlier_signatures_intact(test_pki, letter, tmp_path):
    second, second_phone = test_pki.new_signer("LEE Siu Ming 李小明")
    _third, third_phone = test_pki.new_signer("WONG Mei Ling 黃美玲")
    one, two, three = tmp_path / "one.pdf", tmp_path / "two.pdf", tmp_path / "three.pdf"
    await sign_with_phone(test_pki, letter, one, _options(test_pki, "pdf", PadesLevel.B_LTA))
    await sign_with_phone(
        test_pki,
        one,
        two,
        SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_LT, signer_certificate_der=second.cert_der),
        phone=second_phone,
    )
    await sign_with_phone(
        test_pki, two, three, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_T), phone=third_phone
    )

    v = await validate(test_pki, three)
    assert len(v.statuses) == 3
    names = []
    for status in v.statuses:
        assert status.intact and status.valid and status.trusted, status.summary()
        assert status.bottom_line, status.summary()
        names.append(status.signing_cert.subject.native["common_name"])
    assert names == ["CHAN Tai Man 陳大文", "LEE Siu Ming 李小明", "WONG Mei Ling 黃美玲"]
    # earlier signatures saw only signatures, DSS and timestamps added after them
    assert v.statuses[0].modification_level <= ModificationLevel.FORM_FILLING
    assert v.statuses[1].modification_level <= ModificationLevel.FORM_FILLING
    assert v.statuses[2].modification_level == ModificationLevel.NONE
    # three distinct fields were created
    fields = [s.field_name for s in _reader(three).embedded_signatures]
    assert fields[:1] == ["Signature1"] and len(set(fields)) == len(fields)


def _with_empty_field(source: Path, out: Path, name: str) -> Path:
    """``source`` plus an empty signature field ``name`` on page 1, written to ``out``."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields

    with open(source, "rb") as inf, open(out, "wb") as outf:
        w = IncrementalPdfFileWriter(inf)
        fields.append_signature_field(w, fields.SigFieldSpec(name, on_page=0, box=(50, 50, 250, 110)))
        w.write(outf)
    return out


async def test_reuses_an_existing_empty_field(test_pki, letter, tmp_path):
    with_field = _with_empty_field(letter, tmp_path / "with-field.pdf", "ApproverSignature")
    out = tmp_path / "signed.pdf"
    result = await sign_with_phone(
        test_pki, with_field, out, _options(test_pki, "pdf", PadesLevel.B_B, field_name="ApproverSignature")
    )
    assert result.achieved_level is None
    sigs = _reader(out).embedded_signatures
    assert [s.field_name for s in sigs] == ["ApproverSignature"]


async def test_visible_stamp_renders_traditional_chinese(test_pki, letter, tmp_path):
    out = tmp_path / "signed.pdf"
    lines = ("簽署人：陳大文", "CHAN Tai Man", "香港特別行政區")
    await sign_with_phone(
        test_pki,
        letter,
        out,
        _options(
            test_pki,
            "pdf",
            PadesLevel.B_B,
            appearance=Appearance(page=2, box=(300, 50, 560, 130), lines=lines),
        ),
    )
    v = await validate(test_pki, out)
    assert v.statuses[0].bottom_line
    reader = _reader(out)
    (emb,) = reader.embedded_signatures
    widget = emb.sig_field
    rect = [float(x) for x in widget["/Rect"]]
    assert rect == [300, 50, 560, 130]
    page2 = reader.root["/Pages"]["/Kids"][1].get_object()
    assert any(a.get_object().get("/T") == emb.field_name for a in page2["/Annots"])
    normal_ap = widget["/AP"]["/N"]
    # find the embedded CJK font and the Unicode mapping of the glyphs used
    fonts = _fonts_in(normal_ap)
    assert any("NotoSansCJK" in str(font["/BaseFont"]) for font in fonts), fonts
    to_unicode = b"".join(font["/ToUnicode"].data for font in fonts if "/ToUnicode" in font)
    for ch in "陳大文簽署人香港":
        assert f"<{ord(ch):04X}>".encode() in to_unicode.upper(), ch
    descendant = next(font for font in fonts if "/DescendantFonts" in font)["/DescendantFonts"][0]
    assert "/FontFile3" in descendant["/FontDescriptor"] or "/FontFile2" in descendant["/FontDescriptor"]


def _fonts_in(xobject, seen=None) -> list:
    seen = seen if seen is not None else set()
    found = []
    res = xobject.get("/Resources")
    if res is None:
        return found
    for font in (res.get("/Font") or {}).values():
        found.append(font.get_object())
    for sub in (res.get("/XObject") or {}).values():
        sub = sub.get_object()
        if id(sub) not in seen:
            seen.add(id(sub))
            found.extend(_fonts_in(sub, seen))
    return found


PREPARE_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from signing import pades
from signing.model import SignOptions, RemoteMode, PadesLevel
src, prepared, record_path, mode, cert = sys.argv[1:6]
opts = SignOptions(mode=RemoteMode(mode), level=PadesLevel.B_LTA,
                   signer_certificate_der=bytes.fromhex(cert) if cert != "-" else None)
record = asyncio.run(pades.prepare_for_signing(Path(src), Path(prepared), opts))
Path(record_path).write_text(record.dumps())
"""

FINISH_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from asn1crypto import x509
from signing import pades
from signing.model import PreparedSignature
from signing.services import SigningServices
record_path, prepared, out, value_path, cert_path, root_path, ca_path, tsa = sys.argv[1:9]
record = PreparedSignature.loads(Path(record_path).read_text())
services = SigningServices.with_tsa_url(tsa, trust_roots=[x509.Certificate.load(Path(root_path).read_bytes())],
                                        other_certs=[x509.Certificate.load(Path(ca_path).read_bytes())])
value = Path(value_path).read_bytes()
if record.mode.value == "pdf":
    r = asyncio.run(pades.finish_with_cms(record, Path(prepared), Path(out), value, services))
else:
    r = asyncio.run(pades.finish_with_raw_signature(record, Path(prepared), Path(out), value,
                                                    Path(cert_path).read_bytes(), services))
print(json.dumps({"label": r.label, "size": r.size}))
"""


def _python(script: str, *args: str) -> str:
    """Run ``script`` in a fresh interpreter (a process of its own, as after a restart); its stdout."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


@pytest.mark.parametrize("mode", ["pdf", "hash"])
async def test_prepare_and_finish_in_separate_processes(test_pki, letter, tmp_path, mode):
    import datetime as dt

    prepared, record_path, out = tmp_path / "prepared.pdf", tmp_path / "record.json", tmp_path / "signed.pdf"
    cert_hex = test_pki.signer.cert_der.hex() if mode == "hash" else "-"
    _python(PREPARE_SCRIPT, str(letter), str(prepared), str(record_path), mode, cert_hex)
    record = json.loads(record_path.read_text())
    assert record["level"] == "B-LTA" and record["mode"] == mode

    # the phone (in this process) answers what iAM Smart would have been sent
    from signing.model import PreparedSignature

    rec = PreparedSignature.from_json(record)
    if mode == "pdf":
        value = await test_pki.phone.sign_pdf_digest(rec.document_digest, dt.datetime.now(dt.UTC))
    else:
        value = test_pki.phone.sign_hash(rec.to_be_signed)
    (tmp_path / "value.bin").write_bytes(value)
    (tmp_path / "cert.der").write_bytes(test_pki.signer.cert_der)
    (tmp_path / "root.der").write_bytes(test_pki.pki.cert_der("root"))
    (tmp_path / "ca.der").write_bytes(test_pki.pki.cert_der("ca"))
    done = _python(
        FINISH_SCRIPT,
        str(record_path),
        str(prepared),
        str(out),
        str(tmp_path / "value.bin"),
        str(tmp_path / "cert.der"),
        str(tmp_path / "root.der"),
        str(tmp_path / "ca.der"),
        test_pki.tsa_url,
    )
    label = json.loads(done)["label"]
    assert label == (
        "PAdES B-LTA"
        if mode == "hash"
        else "PDF signature (adbe.pkcs7.detached) with signature timestamp, DSS, document timestamp"
    )
    v = await validate(test_pki, out, offline=True)
    assert v.statuses[0].bottom_line and len(v.doc_timestamps) == 1


@pytest.mark.slow
async def test_large_file_signs_and_verifies(test_pki, tmp_path):
    from fixtures.generate import large_pdf

    big = large_pdf(tmp_path / "big.pdf", size_mb=120)
    assert big.stat().st_size > 120 * 1024 * 1024
    out = tmp_path / "big-signed.pdf"
    result = await sign_with_phone(test_pki, big, out, _options(test_pki, "hash-known-cert", PadesLevel.B_T))
    assert result.size > big.stat().st_size
    v = await validate(test_pki, out)
    assert v.statuses[0].bottom_line, v.statuses[0].summary()
