"""``python -m fixtures.generate`` is a real command line: --help helps instead of making a folder."""

from __future__ import annotations

import subprocess
import sys

from pypdf import PdfReader


def run(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fixtures.generate", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])},
    )


def test_help_prints_usage_and_creates_nothing(tmp_path):
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "usage:" in done.stdout and "--letters" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_writes_the_set_and_numbered_letters(tmp_path):
    done = run(str(tmp_path / "out"), "--letters", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [
        "letter-0001.pdf",
        "letter-0002.pdf",
        "letter-0003.pdf",
        "letter.pdf",
        "three-pages.pdf",
    ]
    assert len(PdfReader(tmp_path / "out" / "three-pages.pdf").pages) == 3


def test_negative_count_is_a_usage_error(tmp_path):
    done = run(str(tmp_path), "--letters", "-1", cwd=tmp_path)
    assert done.returncode == 2 and "--letters" in done.stderr
