"""Finishers racing on one prepared file, and the prepared path changed under a finisher from outside:
exactly one signs, the others are told so with a typed error, and nothing but our signed file is ever
published (found by an outside review of the publish-under-the-lock change)."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest

from signing import errors, pades
from signing.model import PadesLevel, RemoteMode, SignOptions

from .pades_helpers import finish_outcome, validate

NOW = dt.datetime.now(dt.UTC)


async def _prepared(test_pki, letter, tmp_path, level=PadesLevel.B_B):
    prepared = tmp_path / "prepared.pdf"
    record = await pades.prepare_for_signing(letter, prepared, SignOptions(mode=RemoteMode.PDF, level=level))
    cms_der = await test_pki.phone.sign_pdf_digest(record.document_digest, NOW)
    return record, prepared, cms_der


# ------------------------------------------------------------------ things that should hold


async def test_opened_before_publish_locked_after_is_refused(test_pki, letter, tmp_path, monkeypatch):
    """Second finisher opens the prepared inode before the first renames it, locks after the first let go."""
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path, PadesLevel.B_LT)
    out1, out2 = tmp_path / "one.pdf", tmp_path / "two.pdf"
    real_flock = pades.fcntl.flock
    at_lock, go = threading.Event(), threading.Event()
    second_thread: list[int] = []
    result: list[str] = []

    def flock(fd, op):
        if threading.get_ident() in second_thread:
            at_lock.set()
            go.wait(60)
        return real_flock(fd, op)

    monkeypatch.setattr(pades.fcntl, "flock", flock)

    def second():
        second_thread.append(threading.get_ident())
        result.append(finish_outcome(record, prepared, out2, cms_der, test_pki.services()))

    t = threading.Thread(target=second)
    t.start()
    assert at_lock.wait(60)  # the second holds the prepared inode open, before flock
    await pades.finish_with_cms(record, prepared, out1, cms_der, test_pki.services())
    before = out1.read_bytes()
    go.set()
    t.join(60)
    assert result == ["prepared_state_error"], result
    assert not out2.exists() and out1.read_bytes() == before
    v = await validate(test_pki, out1)
    assert len(v.statuses) == 1 and v.statuses[0].bottom_line


async def test_replaced_between_open_and_lock_is_refused(test_pki, letter, tmp_path, monkeypatch):
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path)
    foreign = prepared.read_bytes()
    real_flock = pades.fcntl.flock

    def flock(fd, op):
        tmp = tmp_path / "other.pdf"
        tmp.write_bytes(foreign)
        os.replace(tmp, prepared)  # a different inode at the prepared path now
        return real_flock(fd, op)

    monkeypatch.setattr(pades.fcntl, "flock", flock)
    with pytest.raises(errors.PreparedStateError) as exc:
        await pades.finish_with_cms(record, prepared, tmp_path / "out.pdf", cms_der, test_pki.services())
    assert exc.value.code == "prepared_state_error"
    assert not (tmp_path / "out.pdf").exists()
    assert prepared.read_bytes() == foreign  # the other file is not touched


class _Crash(BaseException):
    pass


@pytest.mark.parametrize("level", [PadesLevel.B_B, PadesLevel.B_LTA])
async def test_retry_after_crash_between_fsync_and_rename(test_pki, letter, tmp_path, monkeypatch, level):
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path, level)
    out = tmp_path / "out.pdf"
    real_replace = pades.os.replace

    def crash(src, dst):
        raise _Crash

    monkeypatch.setattr(pades.os, "replace", crash)
    with pytest.raises(_Crash):
        await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services())
    assert (
        not out.exists() and prepared.stat().st_size >= record.prepared_size
    )  # embedded (and LTV) left behind
    monkeypatch.setattr(pades.os, "replace", real_replace)
    result = await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services())
    assert not prepared.exists()
    v = await validate(test_pki, out)
    assert len(v.statuses) == 1 and v.statuses[0].bottom_line
    assert result.has_document_timestamp == (level is PadesLevel.B_LTA)
    assert len(v.doc_timestamps) == (1 if level is PadesLevel.B_LTA else 0)


def _child(record_json, prepared, out, cms_der, tsa_url, root_der, ca_der, barrier, q):
    from asn1crypto import x509

    from signing.model import PreparedSignature
    from signing.services import SigningServices

    record = PreparedSignature.loads(record_json)
    services = SigningServices.with_tsa_url(
        tsa_url, trust_roots=[x509.Certificate.load(root_der)], other_certs=[x509.Certificate.load(ca_der)]
    )
    barrier.wait()
    q.put(finish_outcome(record, prepared, out, cms_der, services))


@pytest.mark.parametrize("level", [PadesLevel.B_B, PadesLevel.B_LT])
@pytest.mark.parametrize("same_output", [False, True])
async def test_processes_racing_sign_once(test_pki, letter, tmp_path, same_output, level):
    """Four forked processes finish the same prepared file, 15 rounds: exactly one signs each time."""
    import multiprocessing as mp

    from .conftest import asn1

    ctx = mp.get_context("fork")
    for round_ in range(15):
        d = tmp_path / f"r{round_}"
        d.mkdir()
        record, prepared, cms_der = await _prepared(test_pki, letter, d, level)
        barrier, q = ctx.Barrier(4), ctx.Queue()
        outs = [d / ("out.pdf" if same_output else f"out-{i}.pdf") for i in range(4)]
        procs = [
            ctx.Process(
                target=_child,
                args=(
                    record.dumps(),
                    str(prepared),
                    str(o),
                    cms_der,
                    test_pki.tsa_url,
                    asn1(test_pki.pki.root).dump(),
                    asn1(test_pki.pki.issuing_ca).dump(),
                    barrier,
                    q,
                ),
            )
            for o in outs
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        for p in procs:  # none outlives the round, whatever happened
            if p.is_alive():
                p.kill()
                p.join(5)
        got = sorted(q.get(timeout=5) for _ in procs)
        assert got.count("signed") == 1, (round_, got)
        assert set(got) <= {"signed", "finish_in_progress", "prepared_state_error"}, (round_, got)
        published = [o for o in set(outs) if o.exists()]
        assert len(published) == 1
        v = await validate(test_pki, published[0])
        assert len(v.statuses) == 1 and v.statuses[0].bottom_line


# ------------------------------------------------------------------ the path changed from outside


async def test_path_replaced_after_the_lock_is_not_published_as_signed(test_pki, letter, tmp_path):
    """The rename is by path: the prepared path swapped for another file while the finisher holds the
    lock on its inode used to publish the other file under the output name, reported as signed."""
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path)
    out = tmp_path / "out.pdf"
    foreign = b"%PDF-1.7\nnot the signed file\n%%EOF\n"

    def on_stage(name):
        if name == "embedded":
            other = tmp_path / "other.pdf"
            other.write_bytes(foreign)
            os.replace(other, prepared)

    with pytest.raises(errors.PreparedStateError):
        await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services(), on_stage=on_stage)
    assert not out.exists()
    assert prepared.read_bytes() == foreign  # the other file is left where it was


async def test_path_unlinked_after_the_lock_gives_a_typed_error(test_pki, letter, tmp_path):
    """The prepared file removed (the service ending the request) while the finisher holds its lock:
    PreparedStateError, not a raw FileNotFoundError from the rename."""
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path)

    def on_stage(name):
        if name == "embedded":
            prepared.unlink()

    with pytest.raises(errors.PreparedStateError):
        await pades.finish_with_cms(
            record, prepared, tmp_path / "out.pdf", cms_der, test_pki.services(), on_stage=on_stage
        )


async def test_path_replaced_between_check_and_open_is_not_written(test_pki, letter, tmp_path, monkeypatch):
    """The checks looked at one open of the path and the embedding opened it again: a file put there in
    between used to be cut or extended to the record's size, written into and published as signed."""
    record, prepared, cms_der = await _prepared(test_pki, letter, tmp_path)
    out = tmp_path / "out.pdf"
    foreign = b"%PDF-1.7\nsomebody else's file\n%%EOF\n"
    real = pades.cms_checks.check_external_cms

    def check_then_swap(*a, **kw):
        r = real(*a, **kw)
        other = tmp_path / "other.pdf"
        other.write_bytes(foreign)
        os.replace(other, prepared)
        return r

    monkeypatch.setattr(pades.cms_checks, "check_external_cms", check_then_swap)
    with pytest.raises(errors.PreparedStateError):
        await pades.finish_with_cms(record, prepared, out, cms_der, test_pki.services())
    assert not out.exists()
    assert prepared.read_bytes() == foreign  # refused before anything was written into it
