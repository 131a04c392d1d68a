"""How the fuzz tests run: a budget from the environment, new cases every run, and kept regressions.

- ``IAMSIGN_FUZZ_EXAMPLES`` sets the examples per fuzz test (CI keeps the default budget; a soak raises it).
- Every run explores new cases: the conftest picks a fresh Hypothesis seed unless ``--hypothesis-seed`` is
  given, and prints it in the report header so a failure can be replayed.
- An input that made a fuzz test fail is written under ``tests/fuzz_regressions/<target>/`` on Hypothesis's
  final (shrunk) replay; ``tests/test_fuzz_regressions.py`` replays every kept file on every run.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.control import current_build_context

REGRESSIONS = Path(__file__).parent / "fuzz_regressions"
TARGETS = ("upload", "verification")
CASES_RUN: Counter[str] = Counter()  # cases each fuzz test ran in this session, reported at its end


def count_case(test: str) -> None:
    """One fuzz case run by ``test``: the count a long run reports is what ran, not what was asked for."""
    CASES_RUN[test] += 1


def fuzz_examples(default: int) -> int:
    """Examples per fuzz test: ``IAMSIGN_FUZZ_EXAMPLES`` when set, else the CI budget ``default``."""
    raw = os.environ.get("IAMSIGN_FUZZ_EXAMPLES", "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError("IAMSIGN_FUZZ_EXAMPLES must be a positive integer")
    return value


def fuzz_settings(default_examples: int) -> settings:
    """Hypothesis settings for a fuzz test: random (seeded per run), no example database, no deadline."""
    return settings(
        max_examples=fuzz_examples(default_examples),
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )


def regression_path(target: str, data: bytes) -> Path:
    """Where an input that broke ``target`` is kept: named by its content, so it is kept once."""
    if target not in TARGETS:
        raise ValueError(f"unknown fuzz target {target!r}")
    return REGRESSIONS / target / f"{hashlib.sha256(data).hexdigest()[:16]}.bin"


@contextmanager
def kept_if_failing(target: str, data: bytes) -> Iterator[None]:
    """Run a fuzz check; if it fails on Hypothesis's final replay, keep ``data`` as a regression file."""
    try:
        yield
    except Exception:
        if current_build_context().is_final:
            path = regression_path(target, data)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"\nfuzz: kept the failing input as {path} (commit it with its fix)")
        raise
