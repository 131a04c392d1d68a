"""What an operator watches: Prometheus metrics (``metrics``), JSON logs with request ids (``logs``), and the
HTTP middleware that feeds both (``http``). ``install_telemetry`` wires them into the app."""

from __future__ import annotations

from api.telemetry.http import install_telemetry
from api.telemetry.logs import bind_batch, bind_signing_request, configure_logging, current_request_id

__all__ = [
    "bind_batch",
    "bind_signing_request",
    "configure_logging",
    "current_request_id",
    "install_telemetry",
]
