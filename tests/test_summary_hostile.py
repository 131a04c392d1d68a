"""The achieved-signature summary (``read_signature_summary``) on hostile and odd PDFs.

What every test here guards: the summary never claims a higher level, or more augmentations, than the
project's own verifier or pyHanko's full reading (``summary_reference``, what the summary did before it
read less) says of the same file. Where the full reading is fooled or cannot read the file, the summary
says what our own signature really achieved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from fixtures.generate import simple_pdf
from signing import errors
from signing.model import PadesLevel
from signing.summary import read_signature_summary
from signing.verify import VerifyOptions, verify_pdf_sync

from .summary_reference import reference_summary
from .verify_fixtures import recognized_trust, sign

TST, DSS, DOC_TS = "signature-timestamp", "dss", "document-timestamp"


def _pades(level: str, *augmentations: str) -> dict:
    return {"profile": "pades-baseline", "level": level, "augmentations": list(augmentations)}


AS_SIGNED = {
    "B-B": _pades("B-B"),
    "B-LT": _pades("B-LT", TST, DSS),
    "B-LTA": _pades("B-LTA", TST, DSS, DOC_TS),
}
"""The summary of each file of the ``base`` fixture, as the service signed it."""


def _summary(path: Path, field: str | None = None) -> dict | str:
    """``read_signature_summary(...).to_json()``, or the name of the exception it raised."""
    try:
        return read_signature_summary(path, field).to_json()
    except Exception as exc:  # noqa: BLE001 - the answer is which exception
        return type(exc).__name__


def _verified_level(path: Path, test_pki, field: str = "Signature1") -> str | None:
    """The PAdES level the project's verifier gives the signature in ``field``."""
    report = verify_pdf_sync(path, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    (s,) = [s for s in report.signatures if s.field == field]
    return s.pades_level


def _rank(level: str | None) -> int:
    """B-B < B-T < B-LT < B-LTA, and no level below them all."""
    return -1 if level is None else PadesLevel(level).rank


@pytest.fixture(scope="module")
def base(test_pki, tmp_path_factory) -> dict[str, Path]:
    """A one-page letter signed by the service at B-B, B-LT and B-LTA (hash mode), once per module."""
    d = tmp_path_factory.mktemp("hostile")
    letter = simple_pdf(d / "letter.pdf", pages=1)
    services = test_pki.services()
    out: dict[str, Path] = {}

    async def build():
        for level in (PadesLevel.B_B, PadesLevel.B_LT, PadesLevel.B_LTA):
            out[level.value] = await sign(
                letter, d / f"{level.value}.pdf", test_pki.pki, test_pki.signer, level, services
            )

    asyncio.run(build())
    return out


def _update(src: Path, out: Path, edit) -> Path:
    """``src`` with one incremental update made by ``edit(writer)``, written to ``out``."""
    with open(src, "rb") as f:
        w = IncrementalPdfFileWriter(f)
        edit(w)
        with open(out, "wb") as g:
            w.write(g)
    return out


def _add_field(w: IncrementalPdfFileWriter, name: str, v) -> None:
    field = generic.DictionaryObject(
        {pdf_name("/FT"): pdf_name("/Sig"), pdf_name("/T"): generic.TextStringObject(name), pdf_name("/V"): v}
    )
    ref = w.add_object(field)
    acro = w.root["/AcroForm"]
    acro["/Fields"].append(ref)
    w.update_container(acro)


def _fake_doc_ts(contents: bytes | None) -> generic.DictionaryObject:
    """A /DocTimeStamp dictionary with a /ByteRange of zeros and ``contents`` (or no /Contents)."""
    d = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/DocTimeStamp"),
            pdf_name("/SubFilter"): pdf_name("/ETSI.RFC3161"),
            pdf_name("/ByteRange"): generic.ArrayObject([generic.NumberObject(0)] * 4),
        }
    )
    if contents is not None:
        d[pdf_name("/Contents")] = generic.ByteStringObject(contents)
    return d


@pytest.mark.parametrize("lvl", ["B-B", "B-LT", "B-LTA"])
def test_the_files_as_signed(base, test_pki, lvl):
    """The premise of the tests below: before any edit, the summary, the full reading and the
    verifier agree on each file the service signed."""
    assert _summary(base[lvl]) == reference_summary(base[lvl]) == AS_SIGNED[lvl]
    assert _verified_level(base[lvl], test_pki) == lvl


# ---------------------------------------------------------------- document timestamps that do not count


@pytest.mark.parametrize("contents", [None, b"\x00", b"not a CMS at all"], ids=["missing", "zero", "junk"])
@pytest.mark.parametrize("lvl", ["B-B", "B-LT"])
def test_unreadable_doc_timestamp_does_not_raise_the_level(base, tmp_path, test_pki, contents, lvl):
    """A later /DocTimeStamp field whose /Contents is missing or not CMS is no document timestamp
    (B-B must not become B-T, nor B-LT B-LTA): the summary says what it said before the edit, as the
    verifier does; pyHanko's full reading cannot read the file at all (the earlier summary raised)."""
    out = _update(
        base[lvl],
        tmp_path / "fake.pdf",
        lambda w: _add_field(w, "FakeTS", w.add_object(_fake_doc_ts(contents))),
    )
    assert _summary(out) == AS_SIGNED[lvl]
    assert _verified_level(out, test_pki) == lvl
    assert isinstance(reference_summary(out), str)  # an exception's name: nothing to compare with


def _doc_ts_unknown_subfilter(w):
    for f in w.root["/AcroForm"]["/Fields"]:
        fo = f.get_object()
        v = fo.raw_get("/V") if "/V" in fo else None
        if v is not None and str(v.get_object().get("/Type")) == "/DocTimeStamp":
            v.get_object()[pdf_name("/SubFilter")] = pdf_name("/x.unknown")
            w.mark_update(v)


def test_doc_timestamp_with_unknown_subfilter_is_not_counted(base, tmp_path, test_pki):
    """A B-LTA file whose document timestamp's /SubFilter is made unknown: like pyHanko's enumeration,
    the summary no longer lists the timestamp and says B-LT; the verifier (which finds document
    timestamps by /Type too) still says B-LTA, so it is only an upper bound here."""
    out = _update(base["B-LTA"], tmp_path / "odd.pdf", _doc_ts_unknown_subfilter)
    assert _summary(out) == reference_summary(out) == _pades("B-LT", TST, DSS)
    assert _rank("B-LT") <= _rank(_verified_level(out, test_pki))


def _rewrite_doc_ts(w):
    for f in w.root["/AcroForm"]["/Fields"]:
        fo = f.get_object()
        v = fo.raw_get("/V") if "/V" in fo else None
        if v is not None and str(v.get_object().get("/Type")) == "/DocTimeStamp":
            w.mark_update(v)  # the same dictionary, written again in a later revision


def test_doc_timestamp_rewritten_later(base, tmp_path, test_pki):
    """A first signer at B-LTA, a second at B-B, then the first's document-timestamp dictionary written
    again (unchanged) in a new revision. Its /ByteRange still covers only the first signer's revision,
    so it does not time-stamp the second signature: the summary of the second says B-B, as before the
    rewrite, not the B-LTA of pyHanko's full reading (which dates the timestamp by the revision that
    last wrote its dictionary). It claims no more than the verifier either."""
    issued, _phone = test_pki.new_signer("SECOND Signer")
    two = asyncio.run(
        sign(
            base["B-LTA"],
            tmp_path / "two.pdf",
            test_pki.pki,
            issued,
            PadesLevel.B_B,
            test_pki.services(),
            "Second",
        )
    )
    assert _summary(two, "Second") == _pades("B-B", DSS)
    out = _update(two, tmp_path / "rewritten.pdf", _rewrite_doc_ts)
    summary = _summary(out, "Second")
    assert summary == _pades("B-B", DSS)
    # the verifier used to date it by that later revision too and gave the second signature B-T
    assert _verified_level(out, test_pki, "Second") == "B-B"
    report = verify_pdf_sync(out, VerifyOptions(trust=recognized_trust(test_pki.pki)))
    (stamp,) = report.document_timestamps
    assert not stamp.covers_revision and not stamp.counts
    assert any("does not cover the revision" in r for r in stamp.reasons)
    # the case is hostile only because the full reading is fooled by it
    assert reference_summary(out, "Second") == _pades("B-LTA", DSS, DOC_TS)


# ---------------------------------------------------------------- DSS that read_dss rejects or finds empty


def _garbage_cert_in_dss(w: IncrementalPdfFileWriter) -> None:
    dss = w.root["/DSS"]
    garbage = w.add_object(generic.StreamObject(stream_data=b"\x30\x03\x02\x01\x01"))
    dss["/Certs"].append(garbage)
    w.update_container(dss)


def _vri_not_a_dict(w: IncrementalPdfFileWriter) -> None:
    dss = w.root["/DSS"]
    dss[pdf_name("/VRI")] = generic.NumberObject(5)
    w.update_container(dss)


@pytest.mark.parametrize("edit", [_garbage_cert_in_dss, _vri_not_a_dict], ids=["bad-cert", "vri-int"])
@pytest.mark.parametrize("lvl", ["B-LT", "B-LTA"])
def test_dss_that_read_dss_rejects_is_not_counted(base, tmp_path, test_pki, edit, lvl):
    """A DSS that pyHanko's read_dss rejects (a certificate that does not parse, a /VRI that is not a
    dictionary) holds no usable revocation data: no "dss", B-T, as the full reading and the verifier
    say (a document timestamp is still listed as an augmentation)."""
    out = _update(base[lvl], tmp_path / "dss.pdf", edit)
    expected = _pades("B-T", TST, DOC_TS) if lvl == "B-LTA" else _pades("B-T", TST)
    assert _summary(out) == reference_summary(out) == expected
    assert _verified_level(out, test_pki) == "B-T"


def _dss_array(w):
    w.root[pdf_name("/DSS")] = generic.ArrayObject([generic.NumberObject(1)])
    w.update_root()


def _ocsps_with_int(w):
    dss = w.root["/DSS"]
    dss["/OCSPs"].append(generic.NumberObject(7))
    w.update_container(dss)


def _ocsps_only_int(w):
    dss = w.root["/DSS"]
    dss[pdf_name("/OCSPs")] = generic.ArrayObject([generic.NumberObject(7)])
    dss[pdf_name("/CRLs")] = generic.ArrayObject([])
    w.update_container(dss)


def _ocsps_dict(w):
    dss = w.root["/DSS"]
    dss[pdf_name("/OCSPs")] = generic.DictionaryObject({pdf_name("/A"): generic.NumberObject(1)})
    w.update_container(dss)


def _dss_indirect_arrays(w):
    dss = w.root["/DSS"]
    for k in ("/OCSPs", "/CRLs", "/Certs"):
        if k in dss:
            dss[pdf_name(k)] = w.add_object(generic.ArrayObject(list(dss.raw_get(k))))
    w.update_container(dss)


def _dss_null(w):
    w.root[pdf_name("/DSS")] = generic.NullObject()
    w.update_root()


@pytest.mark.parametrize(
    ("edit", "level"),
    [
        (_dss_array, "B-T"),
        (_ocsps_with_int, "B-T"),
        (_ocsps_only_int, "B-T"),
        (_ocsps_dict, "B-T"),
        (_dss_indirect_arrays, "B-LT"),
        (_dss_null, "B-T"),
    ],
    ids=lambda p: p.__name__.lstrip("_") if callable(p) else p,
)
def test_odd_dss_same_as_before(base, tmp_path, test_pki, edit, level):
    """A B-LT file whose DSS is made odd: an array or null instead of a dictionary, an integer or a
    dictionary where the OCSP responses go (no usable DSS: B-T), or its arrays made indirect objects
    (still read: B-LT). The summary says what the full reading and the verifier say."""
    out = _update(base["B-LT"], tmp_path / "odd.pdf", edit)
    summary = _summary(out)
    assert summary == reference_summary(out)
    assert summary == (_pades("B-LT", TST, DSS) if level == "B-LT" else _pades("B-T", TST))
    assert _verified_level(out, test_pki) == level


# ---------------------------------------------------------------- odd signature dictionaries


def _sig_ref(w, name="Signature1"):
    for f in w.root["/AcroForm"]["/Fields"]:
        fo = f.get_object()
        if str(fo.get("/T")) == name:
            return f, fo
    raise AssertionError(f"no field {name}")


def _shared_v(w):
    _ref, fo = _sig_ref(w)
    _add_field(w, "Twin", fo.raw_get("/V"))


def _direct_v(w):
    ref, fo = _sig_ref(w)
    fo[pdf_name("/V")] = fo["/V"]  # the dictionary itself, no longer a reference
    w.mark_update(ref)


def _unknown_subfilter(w):
    _ref, fo = _sig_ref(w)
    sig_ref = fo.raw_get("/V")
    sig = sig_ref.get_object()
    sig[pdf_name("/SubFilter")] = pdf_name("/x.unknown")
    w.mark_update(sig_ref)


def _no_contents(w):
    _ref, fo = _sig_ref(w)
    sig_ref = fo.raw_get("/V")
    sig = sig_ref.get_object()
    del sig["/Contents"]
    w.mark_update(sig_ref)


@pytest.mark.parametrize("field", [None, "Signature1", "Twin"])
def test_shared_v_same_as_before(base, tmp_path, test_pki, field):
    """A second field "Twin" whose /V is our B-LTA signature's own dictionary: each field (and the
    default, the last approval) reads as that signature, B-LTA, as in the full reading; the verifier,
    which reports the shared dictionary once as Signature1, says B-LTA too."""
    out = _update(base["B-LTA"], tmp_path / "shared.pdf", _shared_v)
    assert _summary(out, field) == reference_summary(out, field) == AS_SIGNED["B-LTA"]
    assert _verified_level(out, test_pki) == "B-LTA"


@pytest.mark.parametrize(
    ("edit", "error"),
    [(_unknown_subfilter, "ValueError"), (_no_contents, "PdfReadError")],
    ids=["subfilter", "contents"],
)
@pytest.mark.parametrize("lvl", ["B-B", "B-LTA"])
def test_odd_signature_dictionaries_same_as_before(base, tmp_path, test_pki, edit, error, lvl):
    """Our signature's dictionary given an unknown /SubFilter (neither pyHanko nor the summary lists
    it: "no signature", ValueError) or stripped of its /Contents (pyHanko cannot read it: its
    PdfReadError): the summary raises as the full reading does and claims nothing; the verifier gives
    the signature no level."""
    out = _update(base[lvl], tmp_path / "odd.pdf", edit)
    assert _summary(out) == reference_summary(out) == error
    assert _verified_level(out, test_pki) is None


@pytest.mark.parametrize("lvl", ["B-B", "B-LTA"])
def test_direct_v_on_our_own_field_raises_value_error(base, tmp_path, test_pki, lvl):
    """Our own field's /V made a direct dictionary: the summary cannot read the chosen signature and
    says so with ValueError (the full reading raised a raw AttributeError); the verifier gives it no
    level."""
    out = _update(base[lvl], tmp_path / "odd.pdf", _direct_v)
    with pytest.raises(ValueError, match="no signature"):
        read_signature_summary(out)
    assert reference_summary(out) == "AttributeError"
    assert _verified_level(out, test_pki) is None


def test_earlier_approval_without_contents(base, tmp_path, test_pki):
    """A later-added /Sig field without /Contents, not the one asked for: the summary reads our own
    signature, B-LT, as the verifier does (the full reading raised on the other field)."""

    def edit(w):
        v = _fake_doc_ts(None)
        v[pdf_name("/Type")] = pdf_name("/Sig")
        v[pdf_name("/SubFilter")] = pdf_name("/ETSI.CAdES.detached")
        _add_field(w, "Other", w.add_object(v))

    out = _update(base["B-LT"], tmp_path / "other.pdf", edit)
    assert _summary(out, "Signature1") == AS_SIGNED["B-LT"]
    assert _verified_level(out, test_pki) == "B-LT"
    assert reference_summary(out, "Signature1") == "PdfReadError"


# ---------------------------------------------------------------- end to end: hostile uploads, signed


def _hostile_input(src: Path, out: Path, contents: bytes | None) -> Path:
    """The customer's PDF: its /DSS dictionary is also the /V of a filled /DocTimeStamp field. Signing at
    B-LT rewrites that DSS dictionary (pyHanko keeps the existing DSS as its backing object), so the
    "document timestamp" is last changed in the service's own DSS revision, after the new signature."""

    def edit(w):
        d = _fake_doc_ts(contents)
        d_ref = w.add_object(d)
        w.root[pdf_name("/DSS")] = d_ref
        field = generic.DictionaryObject(
            {
                pdf_name("/FT"): pdf_name("/Sig"),
                pdf_name("/T"): generic.TextStringObject("Stamp"),
                pdf_name("/V"): d_ref,
            }
        )
        f_ref = w.add_object(field)
        w.root[pdf_name("/AcroForm")] = generic.DictionaryObject(
            {pdf_name("/Fields"): generic.ArrayObject([f_ref])}
        )
        w.update_root()

    return _update(src, out, edit)


def _sign_upload(src: Path, out: Path, test_pki, level: PadesLevel) -> Path:
    return asyncio.run(sign(src, out, test_pki.pki, test_pki.signer, level, test_pki.services()))


@pytest.mark.parametrize("contents", [None, b"\x00"], ids=["no-contents", "zero"])
def test_hostile_upload_signed_at_b_lt_is_reported_b_lt(test_pki, tmp_path, contents):
    """The hostile upload with no token in its "document timestamp": signed at B-LT, reported B-LT
    (not B-LTA), as the verifier says; the full reading cannot read the file."""
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)
    src = _hostile_input(letter, tmp_path / "hostile.pdf", contents)
    out = _sign_upload(src, tmp_path / "signed.pdf", test_pki, PadesLevel.B_LT)
    assert _summary(out, "Signature1") == _pades("B-LT", TST, DSS)
    assert _verified_level(out, test_pki) == "B-LT"
    assert isinstance(reference_summary(out, "Signature1"), str)  # an exception's name


def test_hostile_upload_with_a_copied_timestamp_token_is_reported_b_lt(test_pki, tmp_path, base):
    """The same upload with a real (copied) RFC 3161 token in /Contents: its /ByteRange covers nothing,
    so the summary says B-LT, as the verifier does; the full reading parses the token and is fooled
    into B-LTA."""
    with open(base["B-LTA"], "rb") as f:
        token = PdfFileReader(f).embedded_timestamp_signatures[0].pkcs7_content
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)
    src = _hostile_input(letter, tmp_path / "hostile.pdf", token)
    out = _sign_upload(src, tmp_path / "signed.pdf", test_pki, PadesLevel.B_LT)
    assert _summary(out, "Signature1") == _pades("B-LT", TST, DSS)
    assert _verified_level(out, test_pki) == "B-LT"
    assert reference_summary(out, "Signature1") == _pades("B-LTA", TST, DSS, DOC_TS)


def test_upload_with_damaged_dss_cert_signed_at_b_lt(test_pki, tmp_path):
    """An uploaded PDF whose DSS read_dss rejects (a certificate that does not parse), asked for at
    B-LT: the service refuses it with a SigningError (damaged_pdf), so it never publishes a B-LT file
    whose DSS no reader can use."""
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)

    def edit(w):
        g = w.add_object(generic.StreamObject(stream_data=b"\x30\x03\x02\x01\x01"))
        w.root[pdf_name("/DSS")] = w.add_object(
            generic.DictionaryObject({pdf_name("/Certs"): generic.ArrayObject([g])})
        )
        w.update_root()

    src = _update(letter, tmp_path / "baddss.pdf", edit)
    with pytest.raises(errors.SigningError) as refused:
        _sign_upload(src, tmp_path / "signed.pdf", test_pki, PadesLevel.B_LT)
    assert isinstance(refused.value, errors.DamagedPdfError), repr(refused.value)
    assert not (tmp_path / "signed.pdf").exists()


def test_upload_with_damaged_dss_signed_at_b_t_is_reported_b_t(test_pki, tmp_path, base):
    """A B-T request (no LTV step: the uploaded DSS stays as it is) on a PDF whose DSS has an OCSP
    response and one damaged certificate: read_dss rejects that DSS, so no "dss" and B-T, as the full
    reading and the verifier say (not B-LT)."""
    with open(base["B-LT"], "rb") as f:
        ocsp_der = PdfFileReader(f).root["/DSS"]["/OCSPs"][0].get_object().data
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)

    def edit(w):
        bad = w.add_object(generic.StreamObject(stream_data=b"\x30\x03\x02\x01\x01"))
        good = w.add_object(generic.StreamObject(stream_data=ocsp_der))
        w.root[pdf_name("/DSS")] = w.add_object(
            generic.DictionaryObject(
                {
                    pdf_name("/Certs"): generic.ArrayObject([bad]),
                    pdf_name("/OCSPs"): generic.ArrayObject([good]),
                }
            )
        )
        w.update_root()

    src = _update(letter, tmp_path / "baddss.pdf", edit)
    out = _sign_upload(src, tmp_path / "signed.pdf", test_pki, PadesLevel.B_T)
    assert _summary(out, "Signature1") == reference_summary(out, "Signature1") == _pades("B-T", TST)
    assert _verified_level(out, test_pki) == "B-T"


def test_upload_with_direct_v_field(test_pki, tmp_path, base):
    """An uploaded PDF with a filled signature field whose /V is a direct dictionary (a recognised
    /SubFilter and a real CMS): signing at B-B succeeds, and the summary skips that foreign field and
    reads our own signature, B-B, by name and by default, as the verifier does; the full reading
    raised AttributeError on the foreign field."""
    with open(base["B-B"], "rb") as f:
        real_cms = PdfFileReader(f).embedded_signatures[0].pkcs7_content
    letter = simple_pdf(tmp_path / "letter.pdf", pages=1)

    def edit(w):
        v = _fake_doc_ts(real_cms)
        v[pdf_name("/Type")] = pdf_name("/Sig")
        v[pdf_name("/SubFilter")] = pdf_name("/ETSI.CAdES.detached")
        field = generic.DictionaryObject(
            {
                pdf_name("/FT"): pdf_name("/Sig"),
                pdf_name("/T"): generic.TextStringObject("Old"),
                pdf_name("/V"): v,
            }
        )
        w.root[pdf_name("/AcroForm")] = generic.DictionaryObject(
            {pdf_name("/Fields"): generic.ArrayObject([w.add_object(field)])}
        )
        w.update_root()

    src = _update(letter, tmp_path / "direct.pdf", edit)
    out = _sign_upload(src, tmp_path / "signed.pdf", test_pki, PadesLevel.B_B)
    assert _summary(out, "Signature1") == _summary(out) == _pades("B-B")
    assert _verified_level(out, test_pki) == "B-B"
    assert reference_summary(out, "Signature1") == "AttributeError"
