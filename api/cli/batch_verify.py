"""``iamsign batch verify OUTDIR``: verify every signed file of a batch folder and count the indications.

With the folder's state file the files are those it lists as signed, and each is also checked to begin
with the exact bytes of its original (a PAdES signature is an incremental update); without one, every
``*.pdf`` under OUTDIR is verified. Files are verified in worker processes (``--jobs``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.cli.batch_state import RunState

__all__ = ["FileVerdict", "TrustConfig", "run_verify", "verify_folder"]

_trust: tuple[TrustConfig, Any] | None = None
"""(config, trust list) of this worker process."""

Job = tuple[str, str, str | None, int | None]
"""(relative name, path, SHA-256 of the original, size of the original)."""


@dataclass(frozen=True)
class TrustConfig:
    """How to build the trust list (rebuilt in each worker process)."""

    trust_list: Path | None
    extra_roots: tuple[Path, ...]
    data_dir: Path | None
    offline: bool

    def load(self):
        from signing.errors import TrustListError
        from signing.trust import DEFAULT_TRUST_LIST, TrustList, load_certificates

        trusted = TrustList.load(self.trust_list or DEFAULT_TRUST_LIST, data_dir=self.data_dir)
        extra = []
        for path in self.extra_roots:
            if not path.exists():
                raise TrustListError(f"the --trust file {path} does not exist")
            extra.extend(load_certificates(path))
        return trusted.with_roots(extra) if extra else trusted


@dataclass(frozen=True)
class FileVerdict:
    file: str
    indication: str
    """TOTAL-PASSED when every signature passed; else the first other indication, or UNREADABLE,
    NO-SIGNATURE, MISSING, ORIGINAL-ALTERED."""
    detail: str = ""


def _init(cfg: TrustConfig) -> None:
    global _trust
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _trust = (cfg, cfg.load())


def _prefix_sha256(path: Path, size: int) -> str:
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as f:
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _verify_one(job: Job) -> FileVerdict:
    from signing.errors import VerificationError
    from signing.verify import VerifyOptions, verify_pdf_sync

    rel, path, sha_before, size = job
    assert _trust is not None, "_init runs first"
    cfg, trust = _trust
    if not os.path.isfile(path):
        return FileVerdict(rel, "MISSING", "the signed file is not in the folder")
    if sha_before and size is not None and _prefix_sha256(Path(path), size) != sha_before:
        return FileVerdict(rel, "ORIGINAL-ALTERED", "the file does not begin with the bytes of its original")
    try:
        report = verify_pdf_sync(Path(path), VerifyOptions(trust=trust, offline=cfg.offline))
    except VerificationError as exc:
        return FileVerdict(rel, "UNREADABLE", f"{exc.code}: {exc.message}")
    if not report.signatures:
        return FileVerdict(rel, "NO-SIGNATURE", "the file has no signature")
    bad = next((s for s in report.signatures if not s.passed), None)
    if bad is None:
        return FileVerdict(rel, "TOTAL-PASSED")
    why = bad.sub_indication or ""
    return FileVerdict(rel, bad.indication.value, why)


def _jobs_of(out: Path) -> tuple[list[Job], Counter[str]]:
    state = RunState.load(out)
    if state is None:
        pdfs = sorted(p for p in out.rglob("*.pdf") if p.is_file() and not p.name.startswith("."))
        return [(p.relative_to(out).as_posix(), str(p), None, None) for p in pdfs], Counter()
    jobs: list[Job] = []
    unsigned: Counter[str] = Counter()
    for rel in sorted(state.files):
        e = state.files[rel]
        if e.status == "signed":
            jobs.append((rel, str(out / rel), e.sha256_before, e.size))
        else:
            unsigned[e.status] += 1
    return jobs, unsigned


def verify_folder(out: Path, cfg: TrustConfig, jobs: int = 0) -> tuple[list[FileVerdict], Counter[str]]:
    """Verdicts of every signed file of ``out``, and the statuses of the files not signed."""
    work, unsigned = _jobs_of(out)
    if not work:
        return [], unsigned
    cfg.load()  # fail early (and in this process) on a bad trust list
    workers = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    if workers == 1:
        _init(cfg)
        return [_verify_one(j) for j in work], unsigned
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(cfg,)) as pool:
        return list(pool.map(_verify_one, work, chunksize=max(1, len(work) // (workers * 4)))), unsigned


def run_verify(out: Path, cfg: TrustConfig, jobs: int = 0) -> int:
    """Print the problems and the counts by indication; 0 only if every signed file is TOTAL-PASSED."""
    from signing.errors import VerificationError

    if not out.is_dir():
        print(f"iamsign batch verify: {out} is not a folder")
        return 2
    try:
        verdicts, unsigned = verify_folder(out, cfg, jobs)
    except (ValueError, VerificationError) as exc:
        print(f"iamsign batch verify: {getattr(exc, 'message', exc)}")
        return 2
    for v in verdicts:
        if v.indication != "TOTAL-PASSED":
            print(f"{v.indication:<16} {v.file}" + (f"  ({v.detail})" if v.detail else ""))
    counts = Counter(v.indication for v in verdicts)
    line = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no signed file"
    print(f"verified {len(verdicts)} files: {line}")
    if unsigned:
        print("not signed, not verified: " + ", ".join(f"{n} {k}" for k, n in sorted(unsigned.items())))
    return 0 if verdicts and counts["TOTAL-PASSED"] == len(verdicts) else 1
