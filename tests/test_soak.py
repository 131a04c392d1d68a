"""The soak's short mode: flows in flight through kills, a PostgreSQL and a Redis restart, a slow and then
absent TSA/OCSP, iAM Smart errors and timeouts, a full disk; every request ends consistent.

The long run is ``python -m benchmarks.soak.run --minutes 30`` (see benchmarks/soak/run.py).
"""

from __future__ import annotations

import shutil

import pytest

from benchmarks.soak.infra import PG_BIN
from benchmarks.soak.run import SoakConfig, run_soak

pytestmark = [
    pytest.mark.skipif(
        not (PG_BIN / "postgres").exists() or shutil.which("redis-server") is None,
        reason="the soak starts its own PostgreSQL and Redis (postgres and redis-server binaries)",
    ),
]


def test_short_soak_loses_nothing_and_signs_nothing_twice(tmp_path):
    result = run_soak(SoakConfig.short(), tmp_path)
    print("\n" + result.table())
    assert result.problems == []
    assert (result.lost, result.double, result.inconsistent) == (0, 0, 0)
    assert result.kills >= 3
    for fault in ("postgres restart", "redis restart", "tsa/ocsp/crl down", "iam smart D20000"):
        assert result.faults[fault] == 1, result.faults
    assert "internal_error" not in result.failure_codes and "?" not in result.failure_codes, (
        result.failure_codes
    )
    finished = result.by_status
    assert finished["completed"] >= 3, finished
    assert sum(finished.values()) == len(result.flows) >= 10
