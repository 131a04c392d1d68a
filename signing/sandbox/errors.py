"""Errors of the simulated iAM Smart: protocol answers (a return code) and test-hook refusals."""

from __future__ import annotations

from typing import Any

from signing.iamsmart.codes import ReturnCode

__all__ = ["HookError", "SandboxError"]


class SandboxError(Exception):
    """The sandbox answers the API call with ``code`` (and optional small ``content``)."""

    def __init__(self, code: ReturnCode, detail: str | None = None, content: Any = None) -> None:
        super().__init__(f"{code.value}: {detail or code.message}")
        self.code = code
        self.detail = detail or code.message
        self.content = content


class HookError(Exception):
    """A test hook or sandbox page cannot do what was asked (HTTP ``status``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
