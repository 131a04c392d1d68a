"""Field rules of each iAM Smart API request (protocol doc §5, §6, §9), used by both client and sandbox."""

from __future__ import annotations

from .codes import ReturnCode
from .protocol import SOURCES, FieldRule

__all__ = [
    "ACCOUNT_HASH",
    "ACCOUNT_PDF",
    "ACK_RESULT",
    "ANONYMOUS_HASH",
    "ANONYMOUS_PDF",
    "GET_RESULT",
    "GET_TOKEN",
    "SIGNING_RESULTS",
    "SIG_ALGOS",
]

SIG_ALGOS = frozenset({"SHA256withRSA", "NONEwithRSA", "SM3withSM2", "NONEwithSM2"})
SIGNING_RESULTS = frozenset({"SR001", "SR002", "SR003"})

_STATE = FieldRule("state", required=False, max_len=36, pattern=r"[A-Za-z0-9_-]+")
_BUSINESS_ID = FieldRule("businessID", max_len=36, ascii_only=True)
_SOURCE = FieldRule("source", choices=SOURCES, choice_code=ReturnCode.UNSUPPORTED_SOURCE)
_REDIRECT = FieldRule("redirectURI", max_len=1024, ascii_only=True)
_TOKEN = FieldRule("accessToken", max_len=512, ascii_only=True)
_OPENID = FieldRule("openID", max_len=64, ascii_only=True)
_DOC_FIELDS = (
    FieldRule("department", required=False, max_len=100),
    FieldRule("serviceName", max_len=255),
    FieldRule("documentName", max_len=255),
)
_HKIC_OPTIONAL = FieldRule("HKICHash", required=False, max_len=44, base64=True)
_HKIC_MANDATORY = FieldRule("HKICHash", max_len=44, base64=True)
_HASH_CODE = FieldRule("hashCode", max_len=1_000_000, base64=True)
_DOC_DIGEST = FieldRule("docDigest", max_len=88, base64=True)
_SIG_ALGO = FieldRule("sigAlgo", required=False, choices=SIG_ALGOS)
_STEPUP = (
    FieldRule("stepupAuthMethod", required=False, max_len=100),
    FieldRule("stepupAuthPeriod", required=False, max_len=3, pattern=r"[0-9]+"),
)

GET_TOKEN = (
    FieldRule("code", max_len=128, ascii_only=True),
    FieldRule("grantType", choices=frozenset({"authorization_code"})),
    FieldRule("isDirectLoginV2", required=False, choices=frozenset({"true", "false"})),
)
ACCOUNT_HASH = (_BUSINESS_ID, _TOKEN, _OPENID, _SOURCE, _STATE, _HASH_CODE, _REDIRECT, *_DOC_FIELDS,
                _HKIC_OPTIONAL, _SIG_ALGO, *_STEPUP)
ACCOUNT_PDF = (_BUSINESS_ID, _TOKEN, _OPENID, _SOURCE, _STATE, _DOC_DIGEST, _REDIRECT, *_DOC_FIELDS,
               _HKIC_OPTIONAL, *_STEPUP)
ANONYMOUS_HASH = (_BUSINESS_ID, _SOURCE, _STATE, _HASH_CODE, _REDIRECT, *_DOC_FIELDS, _HKIC_MANDATORY,
                  _SIG_ALGO, *_STEPUP)
ANONYMOUS_PDF = (_BUSINESS_ID, _SOURCE, _STATE, _DOC_DIGEST, _REDIRECT, *_DOC_FIELDS, _HKIC_MANDATORY, *_STEPUP)
GET_RESULT = (_TOKEN, _OPENID, FieldRule("businessID", required=False, max_len=36, ascii_only=True))
ACK_RESULT = (_BUSINESS_ID, FieldRule("signingResult", choices=SIGNING_RESULTS))
