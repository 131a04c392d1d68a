"""One TLS client context per process, for every outbound HTTPS call (iAM Smart, TSA, OCSP, CRL, webhooks).

Building a context loads the CA bundle, some 5-60 ms, more than a loopback call: clients made per task or
per request would pay it each time. The trust is httpx's default (certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` when set), and a context is safe to share between clients, threads and event loops.
"""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["shared_tls_context"]


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The process's client context, built on first use."""
    return httpx.create_ssl_context()
