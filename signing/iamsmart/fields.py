"""Field rules of each iAM Smart API request (protocol doc §5, §6, §9), used by both client and sandbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codes import ReturnCode
from .errors import FieldRuleError
from .protocol import SOURCES, FieldRule, check_fields

__all__ = [
    "ACCOUNT_HASH",
    "ACCOUNT_PDF",
    "ACK_RESULT",
    "ANONYMOUS_HASH",
    "ANONYMOUS_PDF",
    "BULK_ACCOUNT",
    "BULK_ANONYMOUS",
    "BULK_ENQUIRY",
    "BULK_HASH_ITEM",
    "BULK_MAX_DOCUMENTS",
    "BULK_PDF_ITEM",
    "GET_BSQC_TOKEN",
    "GET_RESULT",
    "GET_TOKEN",
    "SIGNING_RESULTS",
    "SIG_ALGOS",
    "check_bulk_documents",
    "check_bulk_request",
    "max_callback_sigs",
    "parse_bulk_ack",
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
ACCOUNT_HASH = (
    _BUSINESS_ID,
    _TOKEN,
    _OPENID,
    _SOURCE,
    _STATE,
    _HASH_CODE,
    _REDIRECT,
    *_DOC_FIELDS,
    _HKIC_OPTIONAL,
    _SIG_ALGO,
    *_STEPUP,
)
ACCOUNT_PDF = (
    _BUSINESS_ID,
    _TOKEN,
    _OPENID,
    _SOURCE,
    _STATE,
    _DOC_DIGEST,
    _REDIRECT,
    *_DOC_FIELDS,
    _HKIC_OPTIONAL,
    *_STEPUP,
)
ANONYMOUS_HASH = (
    _BUSINESS_ID,
    _SOURCE,
    _STATE,
    _HASH_CODE,
    _REDIRECT,
    *_DOC_FIELDS,
    _HKIC_MANDATORY,
    _SIG_ALGO,
    *_STEPUP,
)
ANONYMOUS_PDF = (
    _BUSINESS_ID,
    _SOURCE,
    _STATE,
    _DOC_DIGEST,
    _REDIRECT,
    *_DOC_FIELDS,
    _HKIC_MANDATORY,
    *_STEPUP,
)
GET_RESULT = (_TOKEN, _OPENID, FieldRule("businessID", required=False, max_len=36, ascii_only=True))
ACK_RESULT = (_BUSINESS_ID, FieldRule("signingResult", choices=SIGNING_RESULTS))


# ---------------------------------------------------------------------------------------------- bulk (§8, §12.4)

BULK_MAX_DOCUMENTS = 1000
BULK_DEFAULT_MAX_CALLBACK_SIGS = 1000

_CALLBACK_RESULT = FieldRule("callbackResultURI", max_len=1024, ascii_only=True)
_REQUEST_FIELDS = (
    FieldRule("department", required=False, max_len=100),
    FieldRule("serviceName", max_len=255),
    FieldRule("requestName", max_len=255),
)
_BSQC_TOKEN = FieldRule("BSQCToken", max_len=32, ascii_only=True)
_DOC_ID = FieldRule("id", max_len=36, ascii_only=True)
_DOC_NAME = FieldRule("documentName", max_len=255)

BULK_ACCOUNT = (
    _BUSINESS_ID,
    _TOKEN,
    _OPENID,
    _REDIRECT,
    _CALLBACK_RESULT,
    _SOURCE,
    _STATE,
    _HKIC_OPTIONAL,
    *_REQUEST_FIELDS,
    *_STEPUP,
)
BULK_ANONYMOUS = (
    _BUSINESS_ID,
    FieldRule("redirectURI", required=False, max_len=1024, ascii_only=True),
    _CALLBACK_RESULT,
    FieldRule("source", required=False, choices=SOURCES, choice_code=ReturnCode.UNSUPPORTED_SOURCE),
    _STATE,
    _HKIC_OPTIONAL,
    *_REQUEST_FIELDS,
    *_STEPUP,
)
"""Anonymous bulk: ``redirectURI`` (gets the BSQC token callback) and ``source`` are optional here."""
BULK_HASH_ITEM = (_DOC_ID, _DOC_NAME, _HASH_CODE, _SIG_ALGO)
BULK_PDF_ITEM = (_DOC_ID, _DOC_NAME, _DOC_DIGEST)
GET_BSQC_TOKEN = GET_RESULT
BULK_ENQUIRY = (_BSQC_TOKEN, _BUSINESS_ID, FieldRule("openID", required=False, max_len=64, ascii_only=True))
"""enquireStatus and cancelRequest; ``openID`` is mandatory for logged-in requests (checked by the sandbox)."""


def _item_error(index: int, exc: FieldRuleError) -> FieldRuleError:
    return FieldRuleError(ReturnCode(exc.code), f"documents[{index}].{exc.field}", exc.reason)


def max_callback_sigs(payload: Mapping[str, Any]) -> int:
    """``maxCallbackSigs`` (a number or decimal text, 1..1000; default 1000), else D20003."""
    value = payload.get("maxCallbackSigs")
    if value is None:
        return BULK_DEFAULT_MAX_CALLBACK_SIGS
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= BULK_MAX_DOCUMENTS:
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "maxCallbackSigs", "must be 1..1000")
    return value


def check_bulk_documents(documents: Any) -> None:
    """``documents``: 1..1000 hash items ``{id, documentName, hashCode, sigAlgo?}`` or PDF items
    ``{id, documentName, docDigest}``, ids unique within the request (D20001 / D20002 / D20003)."""
    if documents is None:
        raise FieldRuleError(ReturnCode.PARAMETER_MISSING, "documents", "missing")
    if not isinstance(documents, list):
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "documents", "must be a list")
    if not documents:
        raise FieldRuleError(ReturnCode.PARAMETER_EMPTY, "documents", "empty")
    if len(documents) > BULK_MAX_DOCUMENTS:
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "documents", f"more than {BULK_MAX_DOCUMENTS}")
    seen: set[str] = set()
    for i, item in enumerate(documents):
        if not isinstance(item, dict):
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, f"documents[{i}]", "must be an object")
        is_hash, is_pdf = "hashCode" in item, "docDigest" in item
        if is_hash and is_pdf:
            raise FieldRuleError(
                ReturnCode.PARAMETER_INVALID, f"documents[{i}]", "has hashCode and docDigest"
            )
        if not is_hash and not is_pdf:
            raise FieldRuleError(ReturnCode.PARAMETER_MISSING, f"documents[{i}].hashCode", "missing")
        if is_pdf and "sigAlgo" in item:
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, f"documents[{i}].sigAlgo", "not for PDF items")
        try:
            check_fields(BULK_HASH_ITEM if is_hash else BULK_PDF_ITEM, item)
        except FieldRuleError as exc:
            raise _item_error(i, exc) from None
        if item["id"] in seen:
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, f"documents[{i}].id", "repeats an earlier id")
        seen.add(item["id"])


def check_bulk_request(payload: Mapping[str, Any], *, anonymous: bool) -> None:
    """All field rules of a bulk initiateRequest."""
    check_fields(BULK_ANONYMOUS if anonymous else BULK_ACCOUNT, payload)
    max_callback_sigs(payload)
    check_bulk_documents(payload.get("documents"))


def parse_bulk_ack(payload: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """A bulk ackResult: ``(signingResult, {})`` for the whole request, or ``(None, {id: result})`` when
    ``signingResult`` is ``""`` and ``signatures: [{id, signingResult}]`` acknowledges single documents."""
    check_fields((_BUSINESS_ID,), payload)
    result, items = payload.get("signingResult"), payload.get("signatures")
    if result is None:
        raise FieldRuleError(ReturnCode.PARAMETER_MISSING, "signingResult", "missing")
    if not isinstance(result, str):
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "signingResult", "must be a string")
    if result:
        if result not in SIGNING_RESULTS:
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "signingResult", "is not a supported value")
        if items is not None:
            raise FieldRuleError(
                ReturnCode.PARAMETER_INVALID, "signatures", "only with an empty signingResult"
            )
        return result, {}
    if items is None:
        raise FieldRuleError(ReturnCode.PARAMETER_MISSING, "signatures", "missing")
    if not isinstance(items, list):
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "signatures", "must be a list")
    if not items:
        raise FieldRuleError(ReturnCode.PARAMETER_EMPTY, "signatures", "empty")
    if len(items) > BULK_MAX_DOCUMENTS:
        raise FieldRuleError(ReturnCode.PARAMETER_INVALID, "signatures", f"more than {BULK_MAX_DOCUMENTS}")
    acks: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, f"signatures[{i}]", "must be an object")
        try:
            check_fields((_DOC_ID, FieldRule("signingResult", choices=SIGNING_RESULTS)), item)
        except FieldRuleError as exc:
            raise FieldRuleError(ReturnCode(exc.code), f"signatures[{i}].{exc.field}", exc.reason) from None
        if item["id"] in acks:
            raise FieldRuleError(ReturnCode.PARAMETER_INVALID, f"signatures[{i}].id", "repeats an earlier id")
        acks[item["id"]] = item["signingResult"]
    return None, acks
