"""The sandbox's front door: request-signing checks (§2, §12.5), per-client CEKs and body decryption (§4).

Header timestamps and nonces are checked against the wall clock (the client's clock does not move with
the sandbox's); CEK lifetimes run on the sandbox's movable clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.errors import EnvelopeError
from signing.iamsmart.protocol import (
    HEADER_NAMES,
    SIGNATURE_METHOD,
    decrypt_json,
    encrypt_content,
    new_cek,
    verify_signature,
)

from .clock import MovableClock
from .errors import SandboxError
from .options import SandboxOptions
from .registry import RegisteredService, ServiceRegistry

__all__ = ["RequestGate", "Sealer", "ServerCek"]


@dataclass
class ServerCek:
    """The CEK the sandbox holds for one client."""

    key: bytes = field(repr=False)
    issue_ms: int
    expires_ms: int


@dataclass(frozen=True)
class Sealer:
    """Encrypts callback content under one CEK; ``secret_key`` is that CEK wrapped with the client's KEK."""

    cek: bytes = field(repr=False)
    secret_key: str

    def encrypt(self, content: bytes | Mapping[str, Any]) -> str:
        return encrypt_content(self.cek, content)


class RequestGate:
    """Authenticates signed POSTs and keeps each client's CEK, nonce memory and last timestamp."""

    def __init__(self, options: SandboxOptions, registry: ServiceRegistry, clock: MovableClock) -> None:
        self.options = options
        self.registry = registry
        self.clock = clock
        self._ceks: dict[str, ServerCek] = {}
        self._nonces: dict[str, dict[str, float]] = {}
        self._last_ts: dict[str, int] = {}

    # ------------------------------------------------------------------ headers

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> RegisteredService:
        """The calling service, after the header checks: D20001/D20002/D20003/D20004/D20005/D20006."""
        h = {k.lower(): v for k, v in headers.items()}
        values: dict[str, str] = {}
        for name in HEADER_NAMES:
            value = h.get(name.lower())
            if value is None:
                raise SandboxError(ReturnCode.PARAMETER_MISSING, f"header {name} missing")
            if value == "":
                raise SandboxError(ReturnCode.PARAMETER_EMPTY, f"header {name} empty")
            values[name] = value
        if values["signatureMethod"] != SIGNATURE_METHOD:
            raise SandboxError(ReturnCode.UNSUPPORTED_SIGNATURE_METHOD)
        nonce, ts_text = values["nonce"], values["timestamp"]
        if len(nonce) > 36 or not nonce.isascii() or not nonce.isprintable():
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "nonce must be <= 36 ASCII characters")
        if not (ts_text.isascii() and ts_text.isdigit()) or len(ts_text) > 15:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "timestamp must be milliseconds")
        service = self.registry.get(values["clientID"])
        if service is None or not verify_signature(
            service.client_id,
            service.client_secret,
            ts_text,
            nonce,
            body,
            values["signature"],
            accept_raw_base64=self.options.accept_raw_base64_signature,
        ):
            raise SandboxError(ReturnCode.SIGNATURE_CHECK_FAILED)
        wall = time.time()
        ts = int(ts_text)
        last = self._last_ts.get(service.client_id, 0)
        if abs(ts - wall * 1000) > self.options.timestamp_window_ms:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "timestamp outside the accepted window")
        if (
            self.options.require_monotonic_timestamp
            and ts < last - self.options.timestamp_reorder_tolerance_ms
        ):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "timestamp earlier than the previous request")
        seen = self._nonces.setdefault(service.client_id, {})
        horizon = wall - self.options.nonce_memory_ms / 1000
        for old in [n for n, t in seen.items() if t < horizon]:
            del seen[old]
        if nonce in seen:
            raise SandboxError(ReturnCode.REPEATED_REQUEST)
        seen[nonce] = wall
        self._last_ts[service.client_id] = max(ts, last)
        return service

    # ------------------------------------------------------------------ CEKs

    def current_cek(self, client_id: str) -> ServerCek:
        """The client's CEK, a new one if it has none or it expired (getKey, callbacks)."""
        now = self.clock.now_ms()
        cek = self._ceks.get(client_id)
        if cek is None or cek.expires_ms <= now:
            cek = ServerCek(new_cek(), now, now + self.options.cek_lifetime_ms)
            self._ceks[client_id] = cek
        return cek

    def revoke_cek(self, client_id: str) -> None:
        self._ceks.pop(client_id, None)

    def decrypt_body(self, service: RegisteredService, body: bytes) -> tuple[dict[str, Any], ServerCek]:
        """The decrypted request content and the CEK it used: D20001/D20002/D20003, D30002, D30004."""
        try:
            data = json.loads(body)
        except ValueError:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "body is not JSON") from None
        if not isinstance(data, dict):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "body is not a JSON object")
        content = data.get("content")
        if content is None:
            raise SandboxError(ReturnCode.PARAMETER_MISSING, "content missing")
        if not isinstance(content, str):
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "content must be a string")
        if content == "":
            raise SandboxError(ReturnCode.PARAMETER_EMPTY, "content empty")
        cek = self._ceks.get(service.client_id)
        if cek is None or cek.expires_ms <= self.clock.now_ms():
            raise SandboxError(ReturnCode.CEK_INVALID)
        try:
            return decrypt_json(cek.key, content), cek
        except EnvelopeError:
            raise SandboxError(ReturnCode.DECRYPTION_EXCEPTION) from None
