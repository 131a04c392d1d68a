"""Hostile input: mutated PDFs and multipart bodies thrown at upload and verification.

600 generated cases per test by default (``IAMSIGN_FUZZ_EXAMPLES`` changes it), new ones on every run (the
seed is in the report header), plus hand-made bombs: no 5xx, no request over 10 s, bounded memory, nothing
left behind. A mutated PDF that ever fails is kept under ``tests/fuzz_regressions/`` (see tests/fuzzing.py).
"""

from __future__ import annotations

import asyncio
import resource
import time
import zlib
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.generate import simple_pdf
from signing.model import PadesLevel, RemoteMode, SignOptions

from . import fuzzing
from .fuzzing import REGRESSIONS, count_case, fuzz_settings, kept_if_failing
from .pades_helpers import sign_with_phone
from .service_fixtures import running_service

CASES = 600  # per test below in CI; IAMSIGN_FUZZ_EXAMPLES overrides it
MAX_SECONDS = 10.0


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory):
    # the fuzzer is one very busy client
    with running_service(tmp_path_factory.mktemp("fuzz"), verification_rate_limit=10**9) as svc:
        yield svc


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, test_pki) -> list[bytes]:
    folder = tmp_path_factory.mktemp("seeds")
    plain = simple_pdf(folder / "plain.pdf", pages=2)
    signed = folder / "signed.pdf"
    asyncio.run(
        sign_with_phone(test_pki, plain, signed, SignOptions(mode=RemoteMode.PDF, level=PadesLevel.B_B))
    )
    return [plain.read_bytes(), signed.read_bytes()]


def _mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, pos, value in ops:
        if not out:
            break
        i = pos % len(out)
        if kind == 0:  # flip a byte
            out[i] ^= (value % 255) + 1
        elif kind == 1:  # truncate
            del out[i:]
        elif kind == 2:  # insert junk
            out[i:i] = bytes([value % 256]) * (value % 64 + 1)
        elif kind == 3:  # delete a run
            del out[i : i + value % 512]
        elif kind == 4:  # duplicate a run (repeated objects, doubled xref sections)
            out[i:i] = out[i : i + value % 2048]
        else:  # overwrite a digit (offsets, lengths, object numbers)
            j = out.find(b"0123456789"[value % 10 : value % 10 + 1], i)
            if j >= 0:
                out[j] = ord("9")
    return bytes(out)


mutations = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 2**31), st.integers(0, 2**16)), min_size=1, max_size=6
)


class Stats:
    slowest = 0.0
    statuses: ClassVar[dict[int, int]] = {}


def _post(client: httpx.Client, path: str, **kw) -> httpx.Response:
    t0 = time.monotonic()
    r = client.post(path, **kw)
    elapsed = time.monotonic() - t0
    Stats.slowest = max(Stats.slowest, elapsed)
    Stats.statuses[r.status_code] = Stats.statuses.get(r.status_code, 0) + 1
    assert r.status_code < 500, r.text[:500]
    assert elapsed < MAX_SECONDS, f"{path} took {elapsed:.1f}s"
    assert "Traceback" not in r.text
    r.json()  # always JSON
    return r


_SETTINGS = fuzz_settings(CASES)


def check_upload(client: httpx.Client, data: bytes) -> None:
    """An uploaded PDF, however broken, is stored or refused with a clear 4xx."""
    r = _post(client, "/v1/documents", files={"file": ("x.pdf", data, "application/pdf")})
    assert r.status_code in (201, 413, 415, 422), r.text


def check_verification(client: httpx.Client, data: bytes) -> None:
    """A PDF handed to public verification, however broken, gets a report or a clear 4xx."""
    r = _post(
        client,
        "/v1/verifications",
        params={"offline": "true"},
        files={"file": ("x.pdf", data, "application/pdf")},
    )
    assert r.status_code in (200, 413, 415, 422), r.text


@_SETTINGS
@given(seed=st.integers(0, 1), ops=mutations)
def test_mutated_pdfs_at_upload(fuzz_service, seeds, seed, ops):
    count_case("upload")
    data = _mutate(seeds[seed], ops)
    with fuzz_service.client() as c, kept_if_failing("upload", data):
        check_upload(c, data)


@_SETTINGS
@given(seed=st.integers(0, 1), ops=mutations)
def test_mutated_pdfs_at_verification(fuzz_service, seeds, seed, ops):
    count_case("verification")
    data = _mutate(seeds[seed], ops)
    with httpx.Client(base_url=fuzz_service.url, timeout=30) as c, kept_if_failing("verification", data):
        check_verification(c, data)


boundaries = st.text(alphabet="abcXYZ019-_'()+,./:=? ", min_size=0, max_size=80)
header_values = st.text(min_size=0, max_size=120)


@_SETTINGS
@given(
    boundary=boundaries,
    field=header_values,
    filename=header_values,
    ctype=header_values,
    cut=st.integers(0, 400),
    body_junk=st.binary(max_size=200),
    path=st.sampled_from(["/v1/documents", "/v1/verifications"]),
)
def test_mutated_multipart_bodies(
    fuzz_service, seeds, boundary, field, filename, ctype, cut, body_junk, path
):
    count_case("multipart")
    pdf = seeds[0]
    b = boundary.encode()
    body = (
        b"--"
        + b
        + b'\r\nContent-Disposition: form-data; name="'
        + field.encode("utf-8", "replace")
        + b'"; filename="'
        + filename.encode("utf-8", "replace")
        + b'"\r\nContent-Type: '
        + ctype.encode("utf-8", "replace")
        + b"\r\n\r\n"
        + pdf
        + body_junk
        + b"\r\n--"
        + b
        + b"--\r\n"
    )
    body = body[: len(body) - cut] if cut < len(body) else body
    with fuzz_service.client() as c:
        try:
            _post(
                c, path, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            )
        except httpx.LocalProtocolError:
            pass  # a header value httpx itself refuses to send


printable_header = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@_SETTINGS
@given(ctype=printable_header, body=st.binary(max_size=2000))
def test_arbitrary_content_types_and_bodies(fuzz_service, ctype, body):
    count_case("content-types")
    with fuzz_service.client() as c:
        try:
            _post(c, "/v1/documents", content=body, headers={"content-type": ctype})
        except httpx.LocalProtocolError:
            pass  # a header value httpx itself refuses to send


def _bomb(kind: str) -> bytes:
    """Hand-made hostile PDFs: a decompression bomb, deep nesting, a huge xref count."""
    if kind == "flate-bomb":
        payload = zlib.compress(bytes(512 * 1024 * 1024), 9)  # 512 MiB of zeros in ~0.5 MiB
        stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(payload) + payload + b"\nendstream"
        objs = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 10 10] /Contents 4 0 R >>",
            stream,
        ]
    elif kind == "deep-nesting":
        objs = [
            b"<< /Type /Catalog /Pages 2 0 R /Deep " + b"[" * 200_000 + b"]" * 200_000 + b" >>",
            b"<< /Type /Pages /Kids [] /Count 0 >>",
        ]
    else:  # huge xref count
        objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    count = 2_000_000_000 if kind == "huge-xref" else len(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % count
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (count, xref)
    return bytes(out)


@pytest.mark.parametrize("kind", ["flate-bomb", "deep-nesting", "huge-xref"])
def test_bombs_are_refused_quickly_within_bounded_memory(fuzz_service, kind):
    data = _bomb(kind)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with fuzz_service.client() as c:
        _post(c, "/v1/documents", files={"file": ("bomb.pdf", data, "application/pdf")})
        _post(
            c,
            "/v1/verifications",
            params={"offline": "true"},
            files={"file": ("bomb.pdf", data, "application/pdf")},
        )
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300, f"{kind}: peak memory grew by {grown_mb:.0f} MB"


def test_nothing_left_behind_and_no_server_errors(fuzz_service):
    """Runs last in this module: the store's temp folder is empty and no 5xx was ever answered."""
    leftovers = list(Path(fuzz_service.settings.documents_dir / "tmp").iterdir())
    assert leftovers == []
    assert not any(code >= 500 for code in Stats.statuses), Stats.statuses
    print(f"\nfuzz: statuses {dict(sorted(Stats.statuses.items()))}, slowest request {Stats.slowest:.2f}s")


def _kept_inputs(target: str) -> list[Path]:
    return sorted((REGRESSIONS / target).glob("*.bin"))


@pytest.mark.parametrize("path", _kept_inputs("upload"), ids=lambda p: p.name)
def test_kept_upload_regressions(fuzz_service, path):
    with fuzz_service.client() as c:
        check_upload(c, path.read_bytes())


@pytest.mark.parametrize("path", _kept_inputs("verification"), ids=lambda p: p.name)
def test_kept_verification_regressions(fuzz_service, path):
    with httpx.Client(base_url=fuzz_service.url, timeout=30) as c:
        check_verification(c, path.read_bytes())


def test_a_failing_input_is_kept_once_after_shrinking(tmp_path, monkeypatch):
    """The keeping itself: a check that fails writes exactly one file, the shrunk input, on the final replay."""
    monkeypatch.setattr(fuzzing, "REGRESSIONS", tmp_path)

    @fuzz_settings(50)
    @given(data=st.binary(min_size=1, max_size=64))
    def fails_on_a_byte_above_200(data):
        with kept_if_failing("verification", data):
            assert all(b <= 200 for b in data)

    with pytest.raises(AssertionError):
        fails_on_a_byte_above_200()
    kept = list((tmp_path / "verification").iterdir())
    assert len(kept) == 1
    assert kept[0].read_bytes() == bytes([201])  # shrunk to the smallest failing input


def test_the_budget_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("IAMSIGN_FUZZ_EXAMPLES", "12345")
    assert fuzz_settings(CASES).max_examples == 12345
    monkeypatch.delenv("IAMSIGN_FUZZ_EXAMPLES")
    assert fuzz_settings(CASES).max_examples == CASES
    assert fuzz_settings(CASES).derandomize is False
