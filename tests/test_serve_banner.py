"""`iamsign serve` prints the replica's own address, not the public URL it shares with other replicas."""

from __future__ import annotations

from pathlib import Path

from api.cli.main import serve_banner
from api.settings import Settings


def test_second_replica_prints_its_own_port(tmp_path):
    settings = Settings(host="127.0.0.1", port=8001, public_url="http://127.0.0.1:8000", data_dir=tmp_path)
    lines = serve_banner(settings, Path(tmp_path))
    assert lines[0].startswith("iamsign listening on http://127.0.0.1:8001 ")
    assert "public URL:      http://127.0.0.1:8000" in lines[1]
    assert any(line.strip().startswith("metrics:") and "127.0.0.1:8001/metrics" in line for line in lines)


def test_single_replica_banner_has_no_separate_public_url(tmp_path):
    lines = serve_banner(Settings(host="0.0.0.0", port=9000, data_dir=tmp_path), Path(tmp_path))
    assert lines[0].startswith("iamsign listening on http://0.0.0.0:9000 ")
    assert not any("public URL" in line for line in lines)
