"""A readable rendering of a report, in English (``en``) or Traditional Chinese (``zh-Hant``).

Everything is translated: indications, checks, the ETO limbs and verdict, every reason and note the
verifier writes (``reasons_zh``), limitations. Only detail quoted from pyHanko stays in English, labelled so.
"""

from __future__ import annotations

from .reasons_zh import reason_zh_or_marked
from .report import LIMITATIONS, Indication, SignatureReport, VerificationReport, iso

__all__ = ["LANGUAGES", "VERDICTS", "render_text"]

LANGUAGES = ("en", "zh-Hant")

_T: dict[str, dict[str, str]] = {
    "title": {"en": "Signature verification report", "zh-Hant": "簽署核實報告"},
    "file": {"en": "File", "zh-Hant": "檔案"},
    "validated_at": {"en": "Validated as of", "zh-Hant": "核實時點"},
    "mode_offline": {
        "en": "offline (only the validation data in the file)",
        "zh-Hant": "離線（只用檔案內的驗證資料）",
    },
    "mode_online": {"en": "online (revocation data may be fetched)", "zh-Hant": "在線（可擷取撤銷資料）"},
    "trust_list": {"en": "Trust list", "zh-Hant": "信任清單"},
    "overall_ok": {
        "en": "RESULT: every signature TOTAL-PASSED",
        "zh-Hant": "結果：所有簽署均為 TOTAL-PASSED（全部通過）",
    },
    "overall_bad": {"en": "RESULT: not every signature passed", "zh-Hant": "結果：並非所有簽署均通過"},
    "no_signature": {"en": "The document has no signature.", "zh-Hant": "文件沒有任何簽署。"},
    "signature": {"en": "Signature", "zh-Hant": "簽署"},
    "signer": {"en": "Signed by", "zh-Hant": "簽署人"},
    "issuer": {"en": "Certificate issuer", "zh-Hant": "證書簽發機構"},
    "serial": {"en": "Certificate serial", "zh-Hant": "證書序號"},
    "time": {"en": "Signing time", "zh-Hant": "簽署時間"},
    "level": {"en": "PAdES level", "zh-Hant": "PAdES 級別"},
    "level_none": {"en": "none (not PAdES baseline)", "zh-Hant": "無（並非 PAdES 基線）"},
    "checks": {"en": "Checks", "zh-Hant": "檢查項目"},
    "eto": {
        "en": "Electronic Transactions Ordinance (Cap. 553) s.6(1A)",
        "zh-Hant": "《電子交易條例》（第553章）第6(1A)條",
    },
    "verdict": {"en": "ETO verdict", "zh-Hant": "條例評估"},
    "reasons": {"en": "Why", "zh-Hant": "原因"},
    "doc_ts": {"en": "Document timestamp", "zh-Hant": "文件時間戳"},
    "limitations": {"en": "What this verification does not decide", "zh-Hant": "本核實不判斷的事項"},
    "yes": {"en": "yes", "zh-Hant": "是"},
    "no": {"en": "no", "zh-Hant": "否"},
    "unknown": {"en": "not established", "zh-Hant": "未能確定"},
    "met": {"en": "met", "zh-Hant": "符合"},
    "not_met": {"en": "not shown", "zh-Hant": "未能證明"},
    "skipped": {"en": "skipped", "zh-Hant": "已略過"},
}

#: eto-verification.md §7 verdicts in plain words. None of them is a legal conclusion.
VERDICTS: dict[str, dict[str, str]] = {
    "ETO_S6_1A_TECHNICAL_CONDITIONS_MET": {
        "en": "The technical conditions of s.6(1A) are shown by the file.",
        "zh-Hant": "檔案顯示符合第6(1A)條的技術條件。",
    },
    "ETO_S6_1A_NOT_SATISFIED": {
        "en": "A recognized certificate, but its validity or its terms are not met.",
        "zh-Hant": "屬認可證書，但不符合其有效期或條款。",
    },
    "CRYPTO_VALID_NOT_RECOGNIZED": {
        "en": "The signature is technically intact, but the certificate is not shown to be a recognized "
        "certificate.",
        "zh-Hant": "簽署在技術上完整，但未能證明證書屬認可證書。",
    },
    "INDETERMINATE": {
        "en": "The evidence in the file is not enough to decide.",
        "zh-Hant": "檔案內的證據不足以作出判斷。",
    },
    "INVALID": {
        "en": "The signature fails a technical check, so s.6(1A) is not met.",
        "zh-Hant": "簽署未能通過技術檢查，因此不符合第6(1A)條。",
    },
}

_INDICATION = {
    Indication.TOTAL_PASSED: {"en": "PASSED", "zh-Hant": "通過"},
    Indication.INDETERMINATE: {"en": "INDETERMINATE", "zh-Hant": "未能確定"},
    Indication.TOTAL_FAILED: {"en": "FAILED", "zh-Hant": "失敗"},
}

_TIME_SOURCE = {
    "signature_timestamp": {
        "en": "proven by a trusted signature timestamp",
        "zh-Hant": "由受信任的簽署時間戳證明",
    },
    "claimed": {"en": "only claimed by the signer (not proof)", "zh-Hant": "只是簽署人自稱（並非證明）"},
    "validation_time": {
        "en": "unknown; the checks used the validation time",
        "zh-Hant": "不詳；檢查以核實時點進行",
    },
}

_CHECKS = {
    "integrity": {
        "en": "signed bytes unchanged, byte range complete",
        "zh-Hant": "已簽署的內容未被更改，位元組範圍完整",
    },
    "signature_value": {"en": "signature value verifies", "zh-Hant": "簽署值核實無誤"},
    "recognized_ca": {
        "en": "certificate chains to a recognized CA of the trust list",
        "zh-Hant": "證書鏈連接至信任清單中的認可核證機關",
    },
    "valid_at_signing_time": {"en": "certificates valid at the signing time", "zh-Hant": "證書於簽署時有效"},
    "not_revoked": {
        "en": "not revoked at the signing time (with evidence)",
        "zh-Hant": "簽署時未被撤銷（有證據）",
    },
    "key_usage": {"en": "key usage allows signing", "zh-Hant": "密鑰用途容許簽署"},
    "unmodified": {"en": "no disallowed change after signing", "zh-Hant": "簽署後沒有不允許的更改"},
}

_LIMBS = {
    "supported_by_recognized_certificate": {
        "en": "(c) supported by a recognized certificate",
        "zh-Hant": "(c) 獲認可證書支持",
    },
    "generated_within_validity": {
        "en": "(d) generated within the validity of that certificate",
        "zh-Hant": "(d) 在該證書有效期內產生",
    },
    "used_in_accordance_with_terms": {
        "en": "(e) used in accordance with the terms of that certificate",
        "zh-Hant": "(e) 按照該證書的條款使用",
    },
}

_SUB = {
    "HASH_FAILURE": {
        "en": "the document bytes covered by the signature were changed",
        "zh-Hant": "簽署所涵蓋的文件內容已被更改",
    },
    "SIG_CRYPTO_FAILURE": {"en": "the signature value is not valid", "zh-Hant": "簽署值無效"},
    "FORMAT_FAILURE": {
        "en": "the signature or the document structure is not acceptable",
        "zh-Hant": "簽署或文件結構不可接受",
    },
    "REVOKED": {
        "en": "the certificate was revoked before the signing time",
        "zh-Hant": "證書在簽署時間之前已被撤銷",
    },
    "NO_CERTIFICATE_CHAIN_FOUND": {
        "en": "no chain to a root in the trust list",
        "zh-Hant": "沒有連接至信任清單根證書的證書鏈",
    },
    "CERTIFICATE_CHAIN_GENERAL_FAILURE": {
        "en": "the chain could not be validated (often: no revocation information; try online, or use an LT/LTA file)",
        "zh-Hant": "證書鏈未能核實（通常因缺乏撤銷資料；可在線核實或使用 LT/LTA 檔案）",
    },
    "OUT_OF_BOUNDS_NO_POE": {
        "en": "a certificate was outside its validity period and there is no proof the signature "
        "existed while it was valid",
        "zh-Hant": "證書不在有效期內，且沒有證據顯示簽署於有效期內產生",
    },
    "NOT_YET_VALID": {
        "en": "the signature was made before the certificate became valid",
        "zh-Hant": "簽署於證書生效之前產生",
    },
    "CHAIN_CONSTRAINTS_FAILURE": {
        "en": "the certificate does not meet the constraints (key usage, profile, policy)",
        "zh-Hant": "證書不符合限制（密鑰用途、證書類別或政策）",
    },
    "TRY_LATER": {
        "en": "revocation information is not yet available or stale",
        "zh-Hant": "撤銷資料尚未提供或已過時",
    },
    "REVOKED_NO_POE": {
        "en": "the certificate is revoked and nothing proves the signature was made before",
        "zh-Hant": "證書已被撤銷，且沒有證據顯示簽署於撤銷前產生",
    },
    "SIG_CONSTRAINTS_FAILURE": {
        "en": "the signature does not meet the signature constraints",
        "zh-Hant": "簽署不符合簽署限制",
    },
    "NO_SIGNING_CERTIFICATE_FOUND": {
        "en": "the signer's certificate is missing or not bound to the signature",
        "zh-Hant": "簽署人證書缺失或未與簽署綁定",
    },
    "CRYPTO_CONSTRAINTS_FAILURE": {"en": "an algorithm is not acceptable", "zh-Hant": "所用演算法不可接受"},
}

_LIMITATIONS_ZH = (
    "法律效力亦取決於本核實不判斷的其他事項。",
    "本核實不判斷政府實體是否為一方（第6(1A)條或第6(1)條）、收件人是否同意，或簽署人是否獲授權簽署。",
    "本核實不判斷文件是否屬附表1、第553B章、附表2或第16條的豁除範圍。",
    "本核實不比較任何交易金額與證書的依據限額。",
    "本核實不建立亦不依賴任何真確性或完整性的推定。",
    "身分只限於證書所載資料；加密的香港身份證號碼從不解碼。",
    "請以數字政策專員的披露紀錄及核證機關的核證作業準則與儲存庫核對認可狀況。本報告並非法律意見。",
)


def _t(key: str, lang: str) -> str:
    return _T[key][lang]


def _say(text: str, lang: str) -> str:
    """One of the verifier's reasons or notes in ``lang``."""
    return text if lang == "en" else reason_zh_or_marked(text)


def _flag(value: bool | None, lang: str) -> str:
    return _t("unknown", lang) if value is None else _t("yes", lang) if value else _t("no", lang)


def _signature(s: SignatureReport, index: int, lang: str) -> list[str]:
    ind = _INDICATION[s.indication][lang]
    head = f"{_t('signature', lang)} {index}: {s.field}  [{ind}: {s.indication.value}"
    head += f" / {s.sub_indication}]" if s.sub_indication else "]"
    lines = [head]
    if s.sub_indication in _SUB:
        lines.append(f"  {_SUB[s.sub_indication][lang]}")
    if s.signer:
        lines += [
            f"  {_t('signer', lang)}: {s.signer.name}",
            f"  {_t('issuer', lang)}: {s.signer.issuer}",
            f"  {_t('serial', lang)}: {s.signer.serial}",
        ]
    lines.append(
        f"  {_t('time', lang)}: {iso(s.signing_time) or '-'} ({_TIME_SOURCE[s.time_source.value][lang]})"
    )
    lines.append(f"  {_t('level', lang)}: {s.pades_level or _t('level_none', lang)}")
    lines.append(f"  {_t('checks', lang)}:")
    checks = s.checks.to_json()
    for key, label in _CHECKS.items():
        lines.append(f"    [{_flag(checks[key], lang)}] {label[lang]}")
    lines.append(f"  {_t('eto', lang)}:")
    eto = s.eto.to_json()
    for key, label in _LIMBS.items():
        lines.append(f"    [{_t('met', lang) if eto[key] else _t('not_met', lang)}] {label[lang]}")
        for why in s.eto.reasons.get(key, ()):
            lines.append(f"        - {_say(why, lang)}")
    plain = VERDICTS.get(s.eto.verdict, {}).get(lang)
    lines.append(
        f"  {_t('verdict', lang)}: {plain} ({s.eto.verdict})"
        if plain
        else f"  {_t('verdict', lang)}: {s.eto.verdict}"
    )
    if s.reasons:
        lines.append(f"  {_t('reasons', lang)}:")
        lines += [f"    - {_say(r, lang)}" for r in s.reasons]
    return lines


def render_text(report: VerificationReport, lang: str = "en") -> str:
    """The report as plain text in ``lang`` (``en`` or ``zh-Hant``)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; use one of {', '.join(LANGUAGES)}")
    lines = [
        _t("title", lang),
        "=" * 40,
        f"{_t('file', lang)}: SHA-256 {report.file_sha256} "
        + (
            f"({report.file_size} bytes, {report.revisions} revision(s))"
            if lang == "en"
            else f"（{report.file_size} 位元組，{report.revisions} 個版本）"
        ),
        (
            f"{_t('validated_at', lang)}: {iso(report.validation_time)}; "
            f"{_t('mode_offline', lang) if report.offline else _t('mode_online', lang)}"
        ),
        (
            f"{_t('trust_list', lang)}: {report.trust_list_version} "
            f"({', '.join(p['id'] for p in report.trust_profiles) or '-'})"
        ),
        "",
        _t("overall_ok", lang) if report.valid else _t("overall_bad", lang),
        "",
    ]
    if not report.signatures:
        lines += [_t("no_signature", lang), ""]
    for i, s in enumerate(report.signatures, 1):
        lines += _signature(s, i, lang) + [""]
    for ts in report.document_timestamps:
        state = _flag(ts.intact and ts.valid and ts.trusted, lang)
        lines.append(f"{_t('doc_ts', lang)}: {ts.field} {iso(ts.time) or '-'} [{state}] {ts.tsa or ''}")
    if report.document_timestamps:
        lines.append("")
    for skipped in report.trust_list_skipped:
        lines.append(f"* {_t('trust_list', lang)}: {_t('skipped', lang)} {skipped}")
    for note in report.notes:
        lines.append(f"* {_say(note, lang)}")
    lines.append(f"{_t('limitations', lang)}:")
    lines += [f"  - {item}" for item in (LIMITATIONS if lang == "en" else _LIMITATIONS_ZH)]
    return "\n".join(lines) + "\n"
