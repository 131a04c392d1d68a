"""The shared core of the simulated iAM Smart: what its single-request desk
(:class:`~signing.sandbox.engine.SandboxEngine`) and its bulk desk (:class:`~signing.sandbox.bulk.BulkDesk`)
both work with.

One :class:`SandboxCore` per sandbox holds the options, clock, registered services, users and PKI, the front
door (gate), the outbound courier, the access tokens issued at login, the businessIDs in use (unique per
client across single and bulk requests) and the background tasks. Both desks receive the same core; neither
reaches into the other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

from signing.iamsmart.codes import ReturnCode
from signing.iamsmart.protocol import wrap_cek

from .clock import MovableClock
from .delivery import Courier
from .errors import HookError, SandboxError
from .gate import RequestGate, Sealer
from .options import SandboxOptions, SecretKeyPlaintext
from .pki import SandboxPki
from .registry import RegisteredService, ServiceRegistry
from .users import SandboxUser, UnknownUserError, UserDirectory, UserStatus

__all__ = ["AccessToken", "SandboxCore", "check_stepup"]


@dataclass
class AccessToken:
    """An access token issued by ``/auth/getToken``."""

    client_id: str
    user_id: str
    open_id: str
    scopes: tuple[str, ...]
    issued_ms: int
    expires_ms: int
    by_qr: bool
    business_id: str | None = None


def check_stepup(payload: Mapping[str, Any]) -> None:
    """The step-up fields of an initiateRequest (single or bulk): at most 720 hours, a valid method."""
    period = payload.get("stepupAuthPeriod")
    if period and int(period) > 720:
        raise SandboxError(ReturnCode.PARAMETER_INVALID, "stepupAuthPeriod above 720 hours")
    method = payload.get("stepupAuthMethod")
    if method:
        try:
            parsed = json.loads(method)
        except ValueError:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "stepupAuthMethod is not JSON") from None
        ok = (
            isinstance(parsed, dict)
            and len(parsed) == 1
            and next(iter(parsed)) in ("unary", "and")
            and isinstance(next(iter(parsed.values())), list)
            and all(m in ("FR", "NFC") for m in next(iter(parsed.values())))
        )
        if not ok:
            raise SandboxError(ReturnCode.PARAMETER_INVALID, "stepupAuthMethod")


@dataclass(eq=False)
class SandboxCore:
    """What the single-request and bulk desks of one sandbox share."""

    options: SandboxOptions
    registry: ServiceRegistry
    users: UserDirectory
    pki: SandboxPki
    clock: MovableClock
    gate: RequestGate
    courier: Courier
    tokens: dict[str, AccessToken] = field(default_factory=dict, repr=False)
    """Access token -> what it grants."""
    business_ids: set[tuple[str, str]] = field(default_factory=set, repr=False)
    """(clientID, businessID) of every request, single or bulk."""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)

    @classmethod
    def create(
        cls,
        options: SandboxOptions,
        registry: ServiceRegistry,
        users: UserDirectory,
        pki: SandboxPki,
        clock: MovableClock,
        http_factory: Callable[[], httpx.AsyncClient] | None = None,
    ) -> SandboxCore:
        """A core with its own gate and courier (``http_factory`` makes the courier's HTTP client)."""
        return cls(
            options,
            registry,
            users,
            pki,
            clock,
            gate=RequestGate(options, registry, clock),
            courier=Courier(options, http_factory),
        )

    # ------------------------------------------------------------------ background work

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; :meth:`aclose` cancels it."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def schedule_auto(
        self,
        user: SandboxUser,
        still_pending: Callable[[], bool],
        approve: Callable[[SandboxUser], Awaitable[Any]],
        reject: Callable[[], Awaitable[Any]],
    ) -> None:
        """The simulated phone's own decision (a user on auto-approve or auto-reject), after its delay."""
        if user.auto_action.value == "none":
            return

        async def act() -> None:
            await asyncio.sleep(user.auto_delay_ms / 1000)
            if not still_pending():
                return
            if user.auto_action.value == "approve":
                await approve(self.users.get(user.user_id))
            else:
                await reject()

        self.spawn(act())

    async def aclose(self) -> None:
        """Cancel the background tasks and close the courier."""
        for task in list(self.tasks):
            task.cancel()
        await self.courier.aclose()

    # ------------------------------------------------------------------ requests

    def business_id_taken(self, client_id: str, business_id: str) -> bool:
        """businessIDs are unique per client across single and bulk requests (D20011)."""
        return (client_id, business_id) in self.business_ids

    def claim_business_id(self, client_id: str, business_id: str) -> None:
        """Record a request's businessID once the request is stored."""
        self.business_ids.add((client_id, business_id))

    def pdf_timestamper(self) -> DummyTimeStamper | None:
        """The TSA that stamps ``pdfSignature`` CMS, if the options ask for a timestamp."""
        return self.pki.timestamper() if self.options.pdf_tst else None

    # ------------------------------------------------------------------ users and tokens

    def user_by_hkid(self, hkid: str) -> SandboxUser:
        """The sandbox user with this HKID, else a 404 hook error."""
        try:
            return self.users.by_hkid(hkid)
        except UnknownUserError:
            raise HookError(404, "unknown_user", "no sandbox user has this HKID") from None

    def token_user(
        self, service: RegisteredService, payload: Mapping[str, Any]
    ) -> tuple[AccessToken, SandboxUser]:
        """The token and user behind ``payload``'s ``accessToken`` and ``openID`` (D40002 / D40003 if not)."""
        token = self.tokens.get(payload["accessToken"])
        if token is None or token.client_id != service.client_id or token.expires_ms <= self.clock.now_ms():
            raise SandboxError(ReturnCode.ACCESS_TOKEN_INVALID)
        user = self.users.get(token.user_id)
        if user.status is UserStatus.DEREGISTERED or (
            user.deregistered_at_ms is not None and token.issued_ms <= user.deregistered_at_ms
        ):
            raise SandboxError(ReturnCode.ACCESS_TOKEN_INVALID, "the account was de-registered")
        if payload["openID"] != token.open_id:
            raise SandboxError(ReturnCode.OPENID_NOT_FOUND)
        return token, user

    def forget_expired_tokens(self, now_ms: int) -> None:
        self.tokens = {k: v for k, v in self.tokens.items() if v.expires_ms > now_ms}

    # ------------------------------------------------------------------ outbound

    def sealer(self, client_id: str) -> Sealer:
        """Encryption for an outbound callback: the client's current CEK (renewed if expired), wrapped."""
        service = self.registry.get(client_id)
        kek = service.kek_public_key() if service else None
        if kek is None:
            raise SandboxError(ReturnCode.KEK_INVALID)
        cek = self.gate.current_cek(client_id)
        as_text = self.options.secretkey_plaintext is SecretKeyPlaintext.BASE64
        return Sealer(cek.key, wrap_cek(kek, cek.key, as_base64_text=as_text))
