"""Server secrets: from the environment when given, else generated once into the data folder (mode 0600)."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from pathlib import Path

__all__ = ["load_or_create_secret"]


def load_or_create_secret(data_dir: Path, name: str, env_value: str | None = None) -> bytes:
    """32 secret bytes: ``env_value`` (Base64 or text) if set, else ``DATA_DIR/secrets/NAME.key``."""
    if env_value:
        try:
            raw = base64.b64decode(env_value, validate=True)
            if len(raw) >= 16:
                return raw
        except ValueError:
            pass
        return env_value.encode()
    folder = Path(data_dir) / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.key"
    if not path.exists():
        _publish_once(path, base64.b64encode(secrets.token_bytes(32)))
    return base64.b64decode(path.read_text().strip())


def _publish_once(path: Path, content: bytes) -> None:
    """Create ``path`` holding ``content`` unless it exists; readers only ever see it complete.

    The content goes to a temp file of this writer's own (several replicas may start together), fsynced,
    then hard-linked to ``path``: the link is atomic and fails if another writer published first, whose
    secret every replica then reads.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another replica's secret is in place: keep it
    finally:
        os.unlink(tmp)
