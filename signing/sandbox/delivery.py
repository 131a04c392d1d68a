"""Outbound HTTP of the sandbox: result callbacks (POST, retried) and the redirects it follows itself
when no browser is involved (GET). Retry policy per §12.3: ``callback_retries`` more attempts,
``callback_retry_delay_s`` apart, ``callback_timeout_s`` each; a POST counts when it gets any 2xx."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from .options import SandboxOptions

__all__ = ["Courier"]


class Courier:
    """Delivers to online services with the sandbox's retry policy."""

    def __init__(
        self, options: SandboxOptions, http_factory: Callable[[], httpx.AsyncClient] | None = None
    ) -> None:
        self.options = options
        self._factory = http_factory or (lambda: httpx.AsyncClient(timeout=options.callback_timeout_s))
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = self._factory()
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def deliver(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        on_attempt: Callable[[], None] | None = None,
        *,
        raw: tuple[bytes, str] | None = None,
    ) -> bool:
        """Send until accepted (POST: 2xx; GET: 2xx or 3xx) or the attempts run out; True if accepted.

        ``body`` goes as JSON; ``raw`` is ``(bytes, content type)`` (the bulk multipart callbacks)."""
        kw: dict[str, Any] = (
            {"content": raw[0], "headers": {"Content-Type": raw[1]}} if raw is not None else {"json": body}
        )
        attempts = 1 + max(0, self.options.callback_retries)
        upper = 300 if method == "POST" else 400
        for attempt in range(attempts):
            if on_attempt is not None:
                on_attempt()
            try:
                resp = await self._client().request(
                    method, url, timeout=self.options.callback_timeout_s, **kw
                )
                if 200 <= resp.status_code < upper:
                    return True
            except httpx.HTTPError:
                pass
            if attempt + 1 < attempts:
                await asyncio.sleep(self.options.callback_retry_delay_s)
        return False
