"""Server secrets: from the environment when given, else generated once into the data folder (mode 0600)."""

from __future__ import annotations

import base64
import os
import secrets
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
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # first writer wins when several replicas start together
        except FileExistsError:
            pass
        tmp.unlink(missing_ok=True)
    return base64.b64decode(path.read_text().strip())
