"""The Python SDK of the iamsign REST API: :class:`IamsignClient` and its async twin
:class:`AsyncIamsignClient` (see :mod:`api.client.core`). Imports nothing of the service."""

from api.client.core import (
    BATCH_TERMINAL,
    ENVELOPE_TERMINAL,
    REQUEST_TERMINAL,
    AsyncIamsignClient,
    Batch,
    BatchCounts,
    BatchDocument,
    Document,
    Downloaded,
    Envelope,
    EnvelopeStep,
    ErrorInfo,
    IamsignClient,
    IamsignConnectionError,
    IamsignError,
    IamsignTimeout,
    Signature,
    SigningRequest,
)

__all__ = [
    "BATCH_TERMINAL",
    "ENVELOPE_TERMINAL",
    "REQUEST_TERMINAL",
    "AsyncIamsignClient",
    "Batch",
    "BatchCounts",
    "BatchDocument",
    "Document",
    "Downloaded",
    "Envelope",
    "EnvelopeStep",
    "ErrorInfo",
    "IamsignClient",
    "IamsignConnectionError",
    "IamsignError",
    "IamsignTimeout",
    "Signature",
    "SigningRequest",
]
