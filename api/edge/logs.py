"""Verification of files from anyone must not fill the log with tracebacks: what goes wrong in a public
verification (an untrusted chain, a malformed attribute, a signature that cannot be checked) is the
file's fault, reported to the caller, and logged as one line.
"""

from __future__ import annotations

import logging

__all__ = ["QUIET_LOGGERS", "OneLine", "one_line_logs"]

QUIET_LOGGERS = ("pyhanko", "pyhanko_certvalidator", "signing.verify")
"""Loggers (and their children) of the verification code."""


class OneLine(logging.Filter):
    """Fold a record's exception into its message (``... (KeyError: 'x')``) and drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            detail = str(exc).splitlines()[0][:300] if str(exc) else ""
            record.msg = f"{record.getMessage()} ({type(exc).__name__}{': ' + detail if detail else ''})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


_FILTER = OneLine()


def one_line_logs(prefixes: tuple[str, ...] = QUIET_LOGGERS) -> None:
    """Put :class:`OneLine` on every logger under ``prefixes`` (those that exist once the code is imported).

    A logger's filters see only the records logged on it, not those of its children, hence each one.
    """
    import pyhanko.sign.validation  # noqa: F401 - create the loggers this is about

    import signing.verify  # noqa: F401

    existing = list(logging.root.manager.loggerDict)
    names = {n for n in existing for p in prefixes if n == p or n.startswith(p + ".")}
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
