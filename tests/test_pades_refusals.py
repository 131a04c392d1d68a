"""Everything that does not verify is refused with a typed error, and nothing is half-written."""

from __future__ import annotations

import datetime as dt
import io
import socket
from pathlib import Path

import pytest
from asn1crypto import cms

from signing import errors, pades
from signing.model import PadesLevel, PreparedSignature, RemoteMode, SigAlgo, SignatureProfile, SignOptions
from signing.services import SigningServices

from .conftest import asn1
from .pades_helpers import sign_with_phone

NOW = dt.datetime.now(dt.UTC)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture
def prepared_pdf(tmp_path, letter):
    """Prepare a pdf-mode B-B signature; returns (record, prepared path, output path)."""

    async def make(**kw) -> tuple[PreparedSignature, Path, Path]:
        prepared = tmp_path / "prepared.pdf"
        record = await pades.prepare_for_signing(
            letter, prepared, SignOptions(**{"level": PadesLevel.B_B, **kw})
        )
        return record, prepared, tmp_path / "signed.pdf"

    return make


async def _refused(
    exc_type, coro, folder: Path, output: Path, code: str | None = None
) -> errors.SigningError:
    before = _files(folder)
    with pytest.raises(exc_type) as info:
        await coro
    assert not output.exists()
    assert _files(folder) == before, "a failed finish left files behind"
    assert info.value.message
    if code:
        assert info.value.code == code
    return info.value


def _mutate_signed_data(cms_der: bytes, mutate) -> bytes:
    ci = cms.ContentInfo.load(cms_der)
    mutate(ci["content"])
    return ci.dump(force=True)


# ------------------------------------------------------------------ pdf mode: the CMS is checked first


async def test_pdf_mode_refuses_cms_for_another_document(test_pki, prepared_pdf, tmp_path):
    record, prepared, out = await prepared_pdf()
    other = await test_pki.phone.sign_pdf_digest(bytes(32), NOW)
    err = await _refused(
        errors.DigestMismatchError,
        pades.finish_with_cms(record, prepared, out, other, test_pki.services()),
        tmp_path,
        out,
        "digest_mismatch",
    )
    assert "messageDigest" in err.message


async def test_pdf_mode_refuses_altered_signature_value(test_pki, prepared_pdf, tmp_path):
    record, prepared, out = await prepared_pdf()
    good = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)

    def flip(sd):
        si = sd["signer_infos"][0]
        value = bytearray(si["signature"].native)
        value[10] ^= 0x01
        si["signature"] = bytes(value)

    bad = _mutate_signed_data(good, flip)
    await _refused(
        errors.InvalidSignatureError,
        pades.finish_with_cms(record, prepared, out, bad, test_pki.services()),
        tmp_path,
        out,
    )


async def test_pdf_mode_refuses_cms_without_signer_certificate(test_pki, prepared_pdf, tmp_path):
    record, prepared, out = await prepared_pdf()
    good = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)

    def drop_certs(sd):
        sd["certificates"] = cms.CertificateSet([])

    bad = _mutate_signed_data(good, drop_certs)
    await _refused(
        errors.CertificateMissingError,
        pades.finish_with_cms(record, prepared, out, bad, test_pki.services()),
        tmp_path,
        out,
    )


async def test_pdf_mode_refuses_cms_that_is_not_detached(test_pki, prepared_pdf, tmp_path):
    record, prepared, out = await prepared_pdf()
    good = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)

    def encapsulate(sd):
        sd["encap_content_info"] = cms.ContentInfo({"content_type": "data", "content": b"hello"})

    bad = _mutate_signed_data(good, encapsulate)
    err = await _refused(
        errors.MalformedCmsError,
        pades.finish_with_cms(record, prepared, out, bad, test_pki.services()),
        tmp_path,
        out,
    )
    assert "detached" in err.message


@pytest.mark.parametrize("garbage", [b"", b"not a cms at all", bytes(300), b"\x30\x82\xff\xff" + bytes(50)])
async def test_pdf_mode_refuses_garbage(test_pki, prepared_pdf, tmp_path, garbage):
    record, prepared, out = await prepared_pdf()
    await _refused(
        errors.MalformedCmsError,
        pades.finish_with_cms(record, prepared, out, garbage, test_pki.services()),
        tmp_path,
        out,
    )


async def test_pdf_mode_refuses_cms_that_does_not_fit_the_pades_subfilter(test_pki, prepared_pdf, tmp_path):
    # the sandbox's pdfSignature carries signingTime, which PAdES baseline forbids
    record, prepared, out = await prepared_pdf(pdf_mode_profile=SignatureProfile.PADES_BASELINE)
    assert record.subfilter == "/ETSI.CAdES.detached"
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    err = await _refused(
        errors.MalformedCmsError,
        pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services()),
        tmp_path,
        out,
    )
    assert "ETSI.CAdES.detached" in err.message


async def test_signature_that_does_not_fit_the_reserved_space(test_pki, prepared_pdf, tmp_path):
    record, prepared, out = await prepared_pdf(reserved_bytes=4096)
    good = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    ca = cms.CertificateChoices({"certificate": asn1(test_pki.pki.issuing_ca)})

    def pad(sd):  # the certificate bag is unsigned: a bigger bag still verifies but no longer fits
        sd["certificates"] = cms.CertificateSet([*sd["certificates"], *([ca] * 4)])

    big = _mutate_signed_data(good, pad)
    err = await _refused(
        errors.SignatureTooLargeError,
        pades.finish_with_cms(record, prepared, out, big, test_pki.services()),
        tmp_path,
        out,
    )
    assert "reserved" in err.message


# ------------------------------------------------------------------ hash mode: the raw value is verified first


async def _prepared_hash(test_pki, letter, tmp_path, **kw):
    prepared = tmp_path / "prepared.pdf"
    opts = SignOptions(**{"mode": RemoteMode.HASH, "level": PadesLevel.B_B, **kw})
    return await pades.prepare_for_signing(letter, prepared, opts), prepared, tmp_path / "signed.pdf"


async def test_hash_mode_refuses_signature_over_other_bytes(test_pki, letter, tmp_path):
    record, prepared, out = await _prepared_hash(test_pki, letter, tmp_path)
    sig = test_pki.phone.sign_hash(b"something else")
    await _refused(
        errors.InvalidSignatureError,
        pades.finish_with_raw_signature(
            record, prepared, out, sig, test_pki.signer.cert_der, test_pki.services()
        ),
        tmp_path,
        out,
        "invalid_signature",
    )


async def test_hash_mode_refuses_signature_from_another_key(test_pki, letter, tmp_path):
    _other, other_phone = test_pki.new_signer("Somebody Else")
    record, prepared, out = await _prepared_hash(test_pki, letter, tmp_path)
    sig = other_phone.sign_hash(record.to_be_signed)
    await _refused(
        errors.InvalidSignatureError,
        pades.finish_with_raw_signature(
            record, prepared, out, sig, test_pki.signer.cert_der, test_pki.services()
        ),
        tmp_path,
        out,
    )


async def test_hash_mode_refuses_a_different_certificate_than_the_one_prepared_for(
    test_pki, letter, tmp_path
):
    renewed, renewed_phone = test_pki.new_signer("CHAN Tai Man 陳大文")  # same person, new certificate
    record, prepared, out = await _prepared_hash(
        test_pki, letter, tmp_path, signer_certificate_der=test_pki.signer.cert_der
    )
    sig = renewed_phone.sign_hash(record.to_be_signed)
    err = await _refused(
        errors.CertificateMismatchError,
        pades.finish_with_raw_signature(record, prepared, out, sig, renewed.cert_der, test_pki.services()),
        tmp_path,
        out,
    )
    assert "prepare again" in err.message
    # the honest retry: prepare without a known certificate, which gives adbe.pkcs7.detached
    result = await sign_with_phone(
        test_pki,
        prepared,
        out,
        SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_B),
        phone=renewed_phone,
        cert_der=renewed.cert_der,
    )
    assert result.achieved_level is None and result.profile is SignatureProfile.PKCS7_DETACHED


async def test_none_with_rsa_without_digest_info_is_refused(test_pki, letter, tmp_path):
    record, prepared, out = await _prepared_hash(test_pki, letter, tmp_path, sig_algo=SigAlgo.NONE_WITH_RSA)
    assert len(record.to_be_signed) == 32
    sig = test_pki.phone.sign_hash(record.to_be_signed, "NONEwithRSA", none_with_rsa_digestinfo=False)
    await _refused(
        errors.InvalidSignatureError,
        pades.finish_with_raw_signature(
            record, prepared, out, sig, test_pki.signer.cert_der, test_pki.services()
        ),
        tmp_path,
        out,
    )


@pytest.mark.parametrize("cert", [b"", b"garbage", bytes(64)])
async def test_hash_mode_refuses_unusable_certificate(test_pki, letter, tmp_path, cert):
    record, prepared, out = await _prepared_hash(test_pki, letter, tmp_path)
    sig = test_pki.phone.sign_hash(record.to_be_signed)
    await _refused(
        errors.CertificateMissingError,
        pades.finish_with_raw_signature(record, prepared, out, sig, cert, test_pki.services()),
        tmp_path,
        out,
    )


# ------------------------------------------------------------------ outside services


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/tsa"


@pytest.mark.parametrize("mode", ["pdf", "hash"])
async def test_tsa_down_fails_b_t_with_a_clear_error(test_pki, letter, tmp_path, mode):
    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode(mode), level=PadesLevel.B_T)
    )
    out = tmp_path / "signed.pdf"
    down = SigningServices.with_tsa_url(_closed_port_url(), trust_roots=[asn1(test_pki.pki.root)])
    if mode == "pdf":
        cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
        coro = pades.finish_with_cms(record, prepared, out, cms_der, down)
    else:
        sig = test_pki.phone.sign_hash(record.to_be_signed)
        coro = pades.finish_with_raw_signature(record, prepared, out, sig, test_pki.signer.cert_der, down)
    err = await _refused(errors.TimestampError, coro, tmp_path, out, "timestamp_unavailable")
    assert "time-stamping authority" in err.message


async def test_tsa_down_falls_back_to_b_b_only_when_allowed(test_pki, letter, tmp_path):
    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(
        letter,
        prepared,
        SignOptions(
            mode=RemoteMode.HASH,
            level=PadesLevel.B_T,
            signer_certificate_der=test_pki.signer.cert_der,
            allow_level_fallback=True,
        ),
    )
    out = tmp_path / "signed.pdf"
    down = SigningServices.with_tsa_url(_closed_port_url(), trust_roots=[asn1(test_pki.pki.root)])
    sig = test_pki.phone.sign_hash(record.to_be_signed)
    result = await pades.finish_with_raw_signature(record, prepared, out, sig, test_pki.signer.cert_der, down)
    assert result.requested_level is PadesLevel.B_T
    assert result.achieved_level is PadesLevel.B_B
    assert not result.has_signature_timestamp
    assert any("TSA failed" in n for n in result.notes)


async def test_b_lt_refuses_when_the_chain_cannot_be_validated(test_pki, letter, tmp_path):
    from signing.sandbox.pki import SandboxPki

    stranger = SandboxPki.open_or_create(tmp_path / "other-pki", "http://127.0.0.1:9/pki")
    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.HASH, level=PadesLevel.B_LT)
    )
    sig = test_pki.phone.sign_hash(record.to_be_signed)
    out = tmp_path / "signed.pdf"
    wrong_anchor = SigningServices(
        timestamper=test_pki.services().timestamper, trust_roots=[asn1(stranger.root)]
    )
    await _refused(
        errors.RevocationInfoError,
        pades.finish_with_raw_signature(record, prepared, out, sig, test_pki.signer.cert_der, wrong_anchor),
        tmp_path,
        out,
        "revocation_info_unavailable",
    )


# ------------------------------------------------------------------ bad input documents


def _encrypted_pdf(path: Path) -> Path:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.generic import pdf_name
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    w.insert_page(
        generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Page"),
                pdf_name("/MediaBox"): generic.ArrayObject(
                    [generic.NumberObject(n) for n in (0, 0, 595, 842)]
                ),
                pdf_name("/Contents"): w.add_object(generic.StreamObject(stream_data=b"")),
            }
        )
    )
    w.encrypt("owner-secret", "user-secret")
    with open(path, "wb") as f:
        w.write(f)
    return path


def _bad_inputs(letter: Path, folder: Path) -> dict[str, tuple[Path, type]]:
    data = letter.read_bytes()
    xref = data.rindex(b"xref")
    cases = {
        "not-a-pdf": (b"PK\x03\x04 this is a zip file, not a PDF" * 10, errors.NotAPdfError),
        "empty": (b"", errors.NotAPdfError),
        "truncated": (data[: len(data) // 2], errors.DamagedPdfError),
        "damaged-xref": (
            data[:xref] + b"xref\n0 7\ngarbage garbage\n" + data[xref + 40 :],
            errors.DamagedPdfError,
        ),
    }
    out = {}
    for name, (content, exc) in cases.items():
        p = folder / f"{name}.pdf"
        p.write_bytes(content)
        out[name] = (p, exc)
    out["encrypted"] = (_encrypted_pdf(folder / "encrypted.pdf"), errors.EncryptedPdfError)
    return out


@pytest.mark.parametrize("case", ["not-a-pdf", "empty", "truncated", "damaged-xref", "encrypted"])
async def test_bad_input_documents(letter, tmp_path, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    source, exc = _bad_inputs(letter, inputs)[case]
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(exc) as info:
        await pades.prepare_for_signing(source, work / "prepared.pdf", SignOptions())
    assert list(work.iterdir()) == []
    assert isinstance(info.value, errors.InputPdfError)
    if case == "encrypted":
        assert "encrypted" in info.value.message and "not supported" in info.value.message
    if case == "truncated":
        assert "truncated" in info.value.message


async def test_already_signed_field_and_missing_page_are_refused(test_pki, letter, tmp_path):
    from signing.model import Appearance

    signed = tmp_path / "signed.pdf"
    await sign_with_phone(test_pki, letter, signed, SignOptions(level=PadesLevel.B_B))
    with pytest.raises(errors.FieldError, match="already signed"):
        await pades.prepare_for_signing(signed, tmp_path / "p2.pdf", SignOptions(field_name="Signature1"))
    with pytest.raises(errors.FieldError, match="page 9 does not exist"):
        await pades.prepare_for_signing(
            letter, tmp_path / "p3.pdf", SignOptions(appearance=Appearance(page=9, lines=("x",)))
        )
    assert not (tmp_path / "p2.pdf").exists() and not (tmp_path / "p3.pdf").exists()


async def test_prepared_state_mismatches(test_pki, prepared_pdf, tmp_path, letter):
    record, prepared, out = await prepared_pdf()
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    # wrong mode
    with pytest.raises(errors.PreparedStateError, match="pdf mode"):
        await pades.finish_with_raw_signature(record, prepared, out, b"x", test_pki.signer.cert_der)
    # a record that does not belong to this file
    with pytest.raises(errors.PreparedStateError):
        await pades.finish_with_cms(record.replace(reserved_region_start=100), prepared, out, cms_der)
    # the prepared file is gone
    with pytest.raises(errors.PreparedStateError, match="does not exist"):
        await pades.finish_with_cms(record, tmp_path / "nope.pdf", out, cms_der)
    # unreadable record JSON
    for text in ("{}", '{"format_version": 1, "mode": "fax"}', '{"format_version": 7}'):
        with pytest.raises(errors.PreparedStateError):
            PreparedSignature.loads(text)
    assert not out.exists()
    # and after all that the prepared file still finishes fine (nothing touched it)
    result = await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services())
    assert out.exists() and result.size == out.stat().st_size
    # success consumes the prepared file: a second finish says so instead of signing twice
    assert not prepared.exists()
    with pytest.raises(errors.PreparedStateError, match="already finished"):
        await pades.finish_with_cms(record, prepared, tmp_path / "again.pdf", cms_der, test_pki.services())


async def test_a_finisher_that_loses_the_race_is_told_it_was_finished(
    test_pki, letter, tmp_path, monkeypatch
):
    """Another finisher published (and so removed) the prepared file between this one's checks and its
    open: the answer is "already finished", never a bare FileNotFoundError (seen under load in CI)."""
    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(letter, prepared, SignOptions(mode=RemoteMode.PDF))
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    checks = pades._check_prepared

    def checked_then_gone(*args, **kwargs):
        checks(*args, **kwargs)
        prepared.unlink()

    monkeypatch.setattr(pades, "_check_prepared", checked_then_gone)
    with pytest.raises(errors.PreparedStateError, match="already finished"):
        await pades.finish_with_cms(record, prepared, tmp_path / "out.pdf", cms_der, test_pki.services())


async def test_a_finish_that_failed_after_embedding_can_be_retried(test_pki, letter, tmp_path):
    """B-LT fails after /Contents is filled (no usable chain): the retry cuts back and succeeds."""
    from signing.sandbox.pki import SandboxPki

    from .pades_helpers import validate

    stranger = SandboxPki.open_or_create(tmp_path / "other-pki", "http://127.0.0.1:9/pki")
    prepared, out = tmp_path / "prepared.pdf", tmp_path / "signed.pdf"
    record = await pades.prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT)
    )
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    wrong = SigningServices(timestamper=test_pki.services().timestamper, trust_roots=[asn1(stranger.root)])
    with pytest.raises(errors.RevocationInfoError):
        await pades.finish_with_cms(record, prepared, out, cms_der, wrong)
    assert not out.exists() and prepared.exists()
    result = await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services())
    assert result.has_dss
    v = await validate(test_pki, out, offline=True)
    assert v.statuses[0].bottom_line, v.statuses[0].summary()


async def test_two_finishers_at_once_sign_once(test_pki, letter, tmp_path):
    """Two processes finishing the same prepared file: one embeds, the other is told so; one good file."""
    import threading

    from .pades_helpers import finish_outcome, validate

    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT)
    )
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def finisher(out: Path) -> None:
        start.wait()
        outcomes.append(finish_outcome(record, prepared, out, cms_der, test_pki.services()))

    threads = [threading.Thread(target=finisher, args=(tmp_path / f"out-{i}.pdf",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(outcomes) == 2, outcomes  # both ended in the time given (a loaded machine is slow)
    assert min(outcomes) in ("finish_in_progress", "prepared_state_error") and outcomes.count("signed") == 1
    (signed,) = [p for p in tmp_path.glob("out-*.pdf")]
    v = await validate(test_pki, signed)
    assert len(v.statuses) == 1 and v.statuses[0].bottom_line


async def test_second_finisher_waiting_while_the_first_publishes_does_not_touch_its_file(
    test_pki, letter, tmp_path, monkeypatch
):
    """A finisher that gets the file between the first one's writing and its rename is refused.

    The first finisher used to let go of its lock before renaming the prepared file into place, so
    a second one could lock the same file (the same inode as the published one), cut it back and
    write into it, then fail on the rename: the first caller's signed file rewritten under it.
    """
    import threading

    from .pades_helpers import finish_outcome, validate

    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(
        letter, prepared, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_LT)
    )
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    first_out, second_out = tmp_path / "first.pdf", tmp_path / "second.pdf"
    second: list[str] = []
    real_replace = pades.os.replace

    def second_finisher() -> None:
        second.append(finish_outcome(record, prepared, second_out, cms_der, test_pki.services()))

    def replace_after_the_second_finisher_tried(src, dst):
        if Path(dst) == first_out and not second:  # the first finisher is about to publish
            t = threading.Thread(target=second_finisher)
            t.start()
            t.join(timeout=120)
        real_replace(src, dst)

    monkeypatch.setattr(pades.os, "replace", replace_after_the_second_finisher_tried)
    await pades.finish_with_cms(record, prepared, first_out, cms_der, test_pki.services())
    assert second in (["finish_in_progress"], ["prepared_state_error"]), second
    assert not second_out.exists()
    v = await validate(test_pki, first_out)
    assert len(v.statuses) == 1 and v.statuses[0].bottom_line


async def test_a_damaged_dss_in_the_upload_is_refused_before_the_signer_is_asked(test_pki, letter, tmp_path):
    """B-LT and up add to the file's DSS; one that pyHanko cannot read (here a certificate entry that is
    not a certificate) used to pass preparation and fail after the signer's approval with a raw
    ValueError. It is refused at preparation now; B-T, which adds no DSS, still signs."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.generic import pdf_name
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    damaged = tmp_path / "damaged-dss.pdf"
    w = IncrementalPdfFileWriter(io.BytesIO(letter.read_bytes()))
    bad = w.add_object(generic.StreamObject(stream_data=b"\x30\x03\x02\x01\x01"))
    w.root[pdf_name("/DSS")] = w.add_object(
        generic.DictionaryObject({pdf_name("/Certs"): generic.ArrayObject([bad])})
    )
    w.update_root()
    buf = io.BytesIO()
    w.write(buf)
    damaged.write_bytes(buf.getvalue())
    for level in (PadesLevel.B_LT, PadesLevel.B_LTA):
        with pytest.raises(errors.DamagedPdfError, match="document security store"):
            await pades.prepare_for_signing(
                damaged,
                tmp_path / f"{level.value}.prepared.pdf",
                SignOptions(mode=RemoteMode.PDF, level=level),
            )
        assert not (tmp_path / f"{level.value}.prepared.pdf").exists()
    record = await pades.prepare_for_signing(
        damaged, tmp_path / "bt.prepared.pdf", SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_T)
    )
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    result = await pades.finish_with_cms(
        record, tmp_path / "bt.prepared.pdf", tmp_path / "bt.pdf", cms_der, test_pki.services()
    )
    assert result.has_signature_timestamp and not result.has_dss
