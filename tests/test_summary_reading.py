"""The achieved-signature summary reads only what it needs of a file, and says what pyHanko's full
reading (``embedded_signatures`` and ``DocumentSecurityStore.read_dss``) says of the same file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore

from signing.model import PadesLevel, RemoteMode, SignatureProfile, SignOptions
from signing.summary import AUGMENTATIONS, SignatureSummary, read_signature_summary
from signing.verify.levels import LevelEvidence, pades_level, signed_attribute_names

from .conftest import SHARED
from .pades_helpers import sign_with_phone

CORPUS = SHARED / "corpus" / "pyhanko"


def _full_reading(path: Path, field_name: str | None = None) -> tuple:
    """(subfilter, signed attributes, signature timestamp, DSS revocation data, document timestamp after)
    by pyHanko's own enumeration and DSS reader, as the summary did before it read less."""
    with open(path, "rb") as f:
        reader = PdfFileReader(f, strict=False)
        embedded = list(reader.embedded_signatures)
        chosen = [s for s in embedded if s.sig_object_type == "/Sig" and field_name in (None, s.field_name)]
        if not chosen:
            return ("none",)
        emb = chosen[-1]
        unsigned = emb.signer_info["unsigned_attrs"]
        try:
            dss = DocumentSecurityStore.read_dss(reader)
            has_dss = bool(dss.ocsps or dss.crls)
        except Exception:  # noqa: BLE001 - as the summary: no DSS or a damaged one
            has_dss = False
        return (
            str(emb.sig_object.get("/SubFilter")),
            signed_attribute_names(emb.signer_info),
            any(a["type"].native == "signature_time_stamp_token" for a in (unsigned or ())),
            has_dss,
            any(
                s.sig_object_type == "/DocTimeStamp" and s.signed_revision > emb.signed_revision
                for s in embedded
            ),
        )


def _lean_reading(path: Path, field_name: str | None = None) -> tuple:
    try:
        summary = read_signature_summary(path, field_name)
    except ValueError:
        return ("none",)
    return summary


def _expected(full: tuple) -> SignatureSummary | tuple:
    """The summary the full reading implies, by the same level rules."""
    if full == ("none",):
        return full
    subfilter, attrs, tst, dss, doc_ts = full
    flags = (tst, dss, doc_ts)
    augmentations = tuple(n for n, on in zip(AUGMENTATIONS, flags, strict=True) if on)
    level, _ = pades_level(
        LevelEvidence(
            subfilter=subfilter,
            signed_attributes=attrs,
            intact=True,
            timestamp_valid=tst,
            dss_has_revinfo=dss,
            document_timestamp_after=doc_ts,
        )
    )
    if level is None:
        return SignatureSummary(SignatureProfile.PKCS7_DETACHED, None, augmentations)
    profile = (
        SignatureProfile.PADES_BASELINE
        if subfilter == "/ETSI.CAdES.detached"
        else SignatureProfile.PKCS7_DETACHED
    )
    return SignatureSummary(profile, PadesLevel(level), augmentations)


@pytest.mark.parametrize("mode", [RemoteMode.PDF, RemoteMode.HASH])
@pytest.mark.parametrize("level", list(PadesLevel))
async def test_summary_matches_the_full_reading_of_our_files(test_pki, letter, tmp_path, mode, level):
    out = tmp_path / "signed.pdf"
    options = SignOptions(mode=mode, level=level, signer_certificate_der=None)
    await sign_with_phone(test_pki, letter, out, options)
    assert _lean_reading(out) == _expected(_full_reading(out))


async def test_summary_of_each_signer_in_a_file_signed_twice(test_pki, letter, tmp_path):
    """Two signers one after another, the first at B-LTA: the first's document timestamp came before
    the second signature, so the second has none after it; each field is described on its own."""
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    await sign_with_phone(test_pki, letter, first, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LTA))
    await sign_with_phone(test_pki, first, second, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT))
    reader = PdfFileReader(io.BytesIO(second.read_bytes()), strict=False)
    names = [s.field_name for s in reader.embedded_regular_signatures]
    assert len(names) == 2
    for name in [None, *names]:
        assert _lean_reading(second, name) == _expected(_full_reading(second, name)), name
    assert read_signature_summary(second, names[0]).augmentations == AUGMENTATIONS
    assert "document-timestamp" not in read_signature_summary(second).augmentations


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not present at {CORPUS}")
def test_summary_matches_the_full_reading_on_the_shared_corpus():
    files = sorted(CORPUS.rglob("*.pdf"))
    assert files
    compared = 0
    for path in files:
        try:
            full = _full_reading(path)
        except Exception:  # noqa: BLE001, S112 - files pyHanko itself cannot enumerate: nothing to compare
            continue
        try:
            lean = _lean_reading(path)
        except Exception as exc:  # noqa: BLE001 - report which file
            pytest.fail(f"{path.name}: the summary failed where pyHanko read the file: {exc!r}")
        assert lean == _expected(full), path.name
        compared += 1
    assert compared >= 10, compared
