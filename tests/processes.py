"""Real service processes for multi-replica and crash tests: ``iamsign serve`` / ``sandbox`` / ``worker``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGKILL this child when the test process dies, so no server outlives a killed test run."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """One ``python -m api.cli ...`` child process, its log in a file, stopped or killed for sure."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, port: int | None = None
    ):
        self.name, self.args, self.port = name, args, port
        self.env = {**os.environ, **env}
        self.log_path = Path(log_dir) / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, extra_env: dict[str, str] | None = None, wait: bool = True) -> ServiceProcess:
        env = {**self.env, **(extra_env or {})}
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", *self.args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # PR_SET_PDEATHSIG has no Popen equivalent; prctl is async-signal-safe, so fork+preexec is safe here
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        log.close()
        if wait and self.port:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy:\n{self.log()}")

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def cli(args: list[str], env: dict[str, str]) -> str:
    """Run one ``iamsign`` command to completion; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # a failure is raised below, with the command's stderr
    )
    if done.returncode != 0:
        raise RuntimeError(f"iamsign {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout
