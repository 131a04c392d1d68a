"""``GET /verify``: the page where a recipient uploads a signed PDF and reads the report (en + zh-Hant).

The page holds no verification logic: its script sends the file to ``POST /v1/verifications`` (the one
place the rule lives, with its size and rate limits) and lays out the JSON it gets back. The wording of
indications, checks, time sources, the s.6(1A) limbs and the limitations is the library's own
(``signing.verify.render`` and ``report.LIMITATIONS``), so the page, the CLI and the text report say the
same thing; only page-specific labels are defined here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.deps import SettingsDep
from api.routes.pages import templates
from signing.verify.reasons_zh import EXACT, PATTERNS, UNTRANSLATED_PREFIX
from signing.verify.render import (
    _CHECKS,
    _INDICATION,
    _LIMBS,
    _LIMITATIONS_ZH,
    _SUB,
    _T,
    _TIME_SOURCE,
    VERDICTS,
)
from signing.verify.report import LIMITATIONS

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _pair(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


def _lib(table: dict) -> dict[str, dict[str, str]]:
    """A render.py table as ``{key: {"en", "zh"}}`` with string keys."""
    return {getattr(k, "value", k): _pair(v["en"], v["zh-Hant"]) for k, v in table.items()}


#: Checks the text report does not list but the page shows as evidence for a limb.
_EXTRA_CHECKS = {
    "chain_found": _pair(
        "a certificate path to a root of the trust list exists", "存在連接至信任清單根證書的證書路徑"
    ),
    "signer_certificate_bound": _pair(
        "the signer certificate is bound to the signature (ESS attribute)",
        "簽署人證書已與簽署綁定（ESS 屬性）",
    ),
    "certificate_policy": _pair(
        "the certificate policy matches the trust-list profile", "證書政策符合信任清單的證書類別"
    ),
    "recognition_in_force": _pair(
        "the recognition of the certificate type was in force at the signing time",
        "簽署時該證書類別的認可仍然有效",
    ),
    "signature_timestamp": _pair("the signature timestamp is valid and trusted", "簽署時間戳有效且受信任"),
    "crypto_strength": _pair("the signer's key is strong enough", "簽署人密鑰強度足夠"),
    "digest_matches": _pair("the digest of the signed bytes matches", "已簽署內容的摘要相符"),
    "byte_range": _pair(
        "the signed byte range covers the signed revision", "已簽署的位元組範圍涵蓋所簽署的版本"
    ),
}

#: Error codes of POST /v1/verifications (and of the upload itself) as a recipient should read them.
_ERRORS = {
    "not_a_pdf": _pair("This file is not a PDF.", "此檔案並非 PDF 檔案。"),
    "damaged_pdf": _pair(
        "This PDF is damaged and cannot be read, so its signatures cannot be checked.",
        "此 PDF 檔案已損壞，無法讀取，因此不能核實其簽署。",
    ),
    "encrypted_pdf": _pair(
        "This PDF is encrypted (password protected); it cannot be verified here.",
        "此 PDF 檔案已加密（受密碼保護），不能在此核實。",
    ),
    "too_large": _pair("The file is larger than the upload limit.", "檔案超出上載上限。"),
    "file_too_large": _pair("The file is larger than the upload limit.", "檔案超出上載上限。"),
    "rate_limited": _pair(
        "Too many verifications from your address. Please try again in a minute.",
        "你的網絡位址提交的核實次數過多，請一分鐘後再試。",
    ),
    "missing_file": _pair("Choose a PDF file first.", "請先選擇 PDF 檔案。"),
    "malformed_multipart": _pair(
        "The upload could not be read. Please try again.", "未能讀取上載內容，請再試。"
    ),
    "unsupported_media_type": _pair(
        "The upload could not be read. Please try again.", "未能讀取上載內容，請再試。"
    ),
    "network": _pair(
        "The verification service could not be reached. Please try again.", "未能連接核實服務，請再試。"
    ),
    "timeout": _pair(
        "The verification took too long and was stopped. Please try again.",
        "核實時間過長，已經停止，請再試。",
    ),
    "unexpected": _pair(
        "The verification failed unexpectedly. Please try again later.", "核實意外失敗，請稍後再試。"
    ),
}

#: Every reason the verifier writes, in Traditional Chinese (exact texts; the patterns are sent to the script).
_REASONS_ZH = EXACT

_PAGE = {
    "signature": _pair("Signature", "簽署"),
    "signer": _lib(_T)["signer"],
    "issuer": _lib(_T)["issuer"],
    "serial": _lib(_T)["serial"],
    "time": _lib(_T)["time"],
    "level": _lib(_T)["level"],
    "level_none": _lib(_T)["level_none"],
    "checks": _pair("All checks", "所有檢查項目"),
    "eto": _lib(_T)["eto"],
    "verdict": _lib(_T)["verdict"],
    "reasons": _pair("Technical details", "技術細節"),
    "why_not": _pair("Not shown because", "未能證明的原因"),
    "evidence": _pair("Evidence", "證據"),
    "yes": _lib(_T)["yes"],
    "no": _lib(_T)["no"],
    "unknown": _lib(_T)["unknown"],
    "met": _lib(_T)["met"],
    "not_met": _lib(_T)["not_met"],
    "overall_ok": _pair(
        "Every signature in this file passed the technical checks.", "此檔案內所有簽署均通過技術檢查。"
    ),
    "overall_bad": _pair("Not every signature in this file passed.", "此檔案內並非所有簽署均通過。"),
    "no_signature": _pair(
        "This file has no signature. There is nothing to verify: it is not a signed document.",
        "此檔案沒有任何簽署，沒有可核實的內容：這並非已簽署的文件。",
    ),
    "file": _pair("File", "檔案"),
    "validated_at": _lib(_T)["validated_at"],
    "mode_offline": _lib(_T)["mode_offline"],
    "mode_online": _lib(_T)["mode_online"],
    "trust_entry": _pair("Trust-list entry", "信任清單項目"),
    "none": _pair("none", "無"),
    "cert_valid": _pair("Certificate validity", "證書有效期"),
    "key_usages": _pair("Key usages in the certificate", "證書內的密鑰用途"),
    "policies": _pair("Certificate policies", "證書政策"),
    "legal_basis": _pair("legal basis", "法律依據"),
    "doc_ts": _lib(_T)["doc_ts"],
    "trusted": _pair("trusted", "受信任"),
    "not_trusted": _pair("not trusted", "不受信任"),
    "testing_cert": _pair(
        "Testing certificate: this signature was made with a sandbox (testing) certificate. It is not a "
        "certificate recognized under the Electronic Transactions Ordinance, so none of the s.6(1A) limbs "
        "can be met, even though the technical checks passed.",
        "測試證書：此簽署以沙盒（測試）證書作出，並非《電子交易條例》下的認可證書，因此即使技術檢查通過，"
        "亦不符合第6(1A)條任何一項條件。",
    ),
    "operator_cert": _pair(
        "This certificate chains to a root added by the operator of this service, not to a recognized "
        "certificate type of the trust list, so the s.6(1A) limbs cannot be met.",
        "此證書連接至本服務營運者加入的根證書，並非信任清單內的認可證書類別，因此不符合第6(1A)條的條件。",
    ),
    "verifying": _pair("Verifying…", "正在核實…"),
    "error_title": _pair("The file could not be verified", "未能核實此檔案"),
    "hkt": _pair("Hong Kong time", "香港時間"),
}


def page_labels() -> dict:
    """Everything the page script needs to say, in English (``en``) and Traditional Chinese (``zh``)."""
    return {
        "indication": _lib(_INDICATION),
        "time_source": _lib(_TIME_SOURCE),
        "checks": {**_lib(_CHECKS), **_EXTRA_CHECKS},
        "limbs": _lib(_LIMBS),
        "sub": _lib(_SUB),
        "verdict": _lib(VERDICTS),
        "errors": _ERRORS,
        "reasons_zh": _REASONS_ZH,
        "reason_patterns": PATTERNS,
        "untranslated_zh": UNTRANSLATED_PREFIX,
        "page": _PAGE,
    }


@router.get("/verify", response_class=HTMLResponse)
def verify_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The upload form; results are drawn in the page from the JSON of ``POST /v1/verifications``."""
    nonce = request.state.csp_nonce  # the page policy and its headers: api.edge.headers
    limit = settings.max_upload_bytes
    response = templates.TemplateResponse(
        request,
        "verify.html",
        {
            "nonce": nonce,
            "labels": page_labels(),
            "limitations": list(zip(LIMITATIONS, _LIMITATIONS_ZH, strict=True)),
            "endpoint": request.app.url_path_for("create_verification"),
            "max_upload_bytes": limit,
            "max_upload_mb": f"{limit / (1024 * 1024):.0f}",
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response
