"""Processes die with the service, and replicas starting together agree on one server secret."""

from __future__ import annotations

import base64
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from api.store import secrets as secrets_store

from .processes import ServiceProcess, free_port


def _children(pid: int) -> set[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_signing_workers_exit_when_serve_is_sigkilled(tmp_path):
    port = free_port()
    serve = ServiceProcess(
        "serve",
        ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        {"IAMSIGN_CPU_WORKERS": "2"},
        tmp_path,
        port=port,
    )
    serve.start()
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline:  # the pool is warmed at startup: 2 workers (+ resource tracker)
            workers = _children(serve.proc.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, f"the signing workers never started:\n{serve.log()}"
        serve.proc.send_signal(signal.SIGKILL)
        serve.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        survivors = [p for p in workers if _alive(p)]
        assert survivors == [], f"{len(survivors)} worker process(es) outlived the service"
    finally:
        serve.kill()
        for pid in _children(serve.proc.pid) | workers:  # never leave one behind, even on failure
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _start_replica(args: tuple[str, multiprocessing.synchronize.Barrier, multiprocessing.Queue]) -> None:
    data, barrier, out = args
    barrier.wait()
    try:
        out.put(base64.b64encode(secrets_store.load_or_create_secret(Path(data), "server")).decode())
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        out.put(f"error: {exc!r}")


def test_replicas_starting_together_read_one_full_secret(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(12):
        data = tmp_path / f"r{round_}"
        barrier, out = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_start_replica, args=((str(data), barrier, out),)) for _ in range(8)]
        for p in procs:
            p.start()
        got = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=10)
        assert not [g for g in got if g.startswith("error")], got
        secrets = {base64.b64decode(g) for g in got}
        assert len(secrets) == 1, f"replicas disagree on the secret: {len(secrets)} different values"
        assert len(secrets.pop()) == 32
        assert [p.name for p in (data / "secrets").iterdir()] == ["server.key"]  # no temp file left


def test_a_writer_interrupted_by_another_replica_still_agrees(tmp_path, monkeypatch):
    """Replica B creates the secret while replica A is between writing its temp file and publishing it."""
    real_fsync, nested = os.fsync, []

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if not nested:
            nested.append(None)
            nested[0] = secrets_store.load_or_create_secret(tmp_path, "server")

    monkeypatch.setattr(secrets_store.os, "fsync", fsync)
    first = secrets_store.load_or_create_secret(tmp_path, "server")
    assert first == nested[0] and len(first) == 32
    assert [p.name for p in (tmp_path / "secrets").iterdir()] == ["server.key"]


def test_workers_outlive_the_thread_that_started_them():
    """PR_SET_PDEATHSIG fires when the starting *thread* ends; the workers must only go with the process."""
    import asyncio
    import threading

    from api.flows.cpu import CpuPool

    pool = CpuPool(1)
    try:
        starter = threading.Thread(target=lambda: asyncio.run(pool.warm()))
        starter.start()
        starter.join(timeout=60)
        worker_pids = set(pool._executor()._processes)
        time.sleep(0.5)
        assert asyncio.run(pool.run(os.getpid)) in worker_pids  # the same worker still answers
    finally:
        pool.shutdown()
