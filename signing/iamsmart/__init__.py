"""The iAM Smart protocol (``protocol``, ``codes``, ``fields``) and its async client (``client``).

No web framework here: the sandbox server in ``api`` and the client both build on ``protocol``.
"""

from .codes import ReturnCode
from .config import ClientConfig, Environment
from .errors import EnvelopeError, FieldRuleError, IamSmartApiError, IamSmartError, IamSmartTransportError

__all__ = [
    "ClientConfig",
    "EnvelopeError",
    "Environment",
    "FieldRuleError",
    "IamSmartApiError",
    "IamSmartError",
    "IamSmartTransportError",
    "ReturnCode",
]
