"""The README's "Try it by hand" steps run as written against `iamsign serve` in sandbox mode: ids are
captured in shell variables, nothing needs copying by hand, and the signed PDF comes out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .processes import REPO, ServiceProcess, free_port


def readme_steps() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Try it by hand") :]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's steps use curl")
def test_try_it_by_hand_runs_as_written(tmp_path):
    port = free_port()
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "fixtures").symlink_to(REPO / "fixtures")
    script = readme_steps().replace("http://127.0.0.1:8000", f"http://127.0.0.1:{port}")
    script = script.replace("/tmp/letters", str(tmp_path / "letters"))
    code = "\n".join(
        line.split("  #")[0] for line in script.splitlines() if not line.lstrip().startswith("#")
    )
    assert "..." not in code and "$DOC" in code and "$SR" in code and "$CODE" in code  # nothing to paste
    serve = ServiceProcess(
        "serve", ["serve", "--port", str(port), "--data-dir", str(tmp_path / "data")], {}, tmp_path, port
    )
    serve.start()
    try:
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        serve.stop()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:] + serve.log()[-2000:]
    assert '"status":"completed"' in run.stdout and '"chain_intact":true' in run.stdout
    assert (tmp_path / "signed.pdf").read_bytes().startswith(b"%PDF-")
