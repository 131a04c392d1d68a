"""The report's reasons in Traditional Chinese: every sentence the verifier writes (``eto.py``,
``signature.py``, ``certs.py``, ``levels.py``, ``document.py``, ``ades.py``), keyed by its exact English text
or by a pattern whose parts (ids, dates, pyHanko's own detail) are carried over.

The JSON report keeps the English text (its contract); the text report and the verification page show the
Chinese next to it or instead of it. Detail that pyHanko writes is not ours to translate: a sentence wholly
from pyHanko is shown in English after a Chinese label saying so (:data:`UNTRANSLATED_PREFIX`).
"""

from __future__ import annotations

import re

__all__ = ["EXACT", "PATTERNS", "UNTRANSLATED_PREFIX", "reason_zh", "reason_zh_or_marked"]

UNTRANSLATED_PREFIX = "（核實程式的技術訊息，只有英文）"

EXACT: dict[str, str] = {
    # eto.py: why a limb of s.6(1A) is not shown
    "the signature is not an intact digital signature of this document (s.2)": "此簽署並非本文件完整的數碼簽署（第2條）",
    "the signer certificate is not bound to the signature": "簽署人證書未與簽署綁定",
    "the certificate does not chain to a root in the trust list": "證書未連接至信任清單內的根證書",
    "the certificate matches no recognized-certificate profile of the trust list": "證書不符合信任清單內任何認可證書類別",
    "the signing time is not proven by a trusted timestamp (only claimed)": "簽署時間未有受信任的時間戳證明（只是自稱）",
    "the signing time is not proven by a trusted timestamp (only unknown)": "簽署時間未有受信任的時間戳證明（時間不詳）",
    "a certificate of the chain was not valid at the signing time": "證書鏈中有證書於簽署時無效",
    "revocation at the signing time is not excluded by the evidence": "現有證據未能排除證書於簽署時已被撤銷",
    "the certificate was revoked at the signing time": "證書於簽署時已被撤銷",
    "no recognition interval covers the signing time": "簽署時間不在任何認可期內",
    "the trust list has no recognition-interval data for this profile": "信任清單沒有此證書類別的認可期資料",
    "limb (c) is not met": "不符合 (c) 項",
    "the key usage of the certificate does not allow signing": "證書的密鑰用途不容許簽署",
    "the certificate policy does not match the profile": "證書政策不符合證書類別",
    "the trust entry names no certificate policy, so the certificate's terms cannot be checked": "信任清單項目沒有指明證書政策，因此無法核對證書的條款",
    # signature.py: signatures the verifier did not get to, or could not read
    "not verified": "未經核實",
    "the signature cannot be read": "無法讀取簽署",
    # signature.py: technical reasons
    "the signature timestamp could not be validated, so the signing time is only claimed": "簽署時間戳未能核實，因此簽署時間只是自稱",
    "the signed bytes changed: their digest does not match the signature": "已簽署的內容已被更改：其摘要與簽署不符",
    "the signature value does not verify with the signer's key": "簽署值未能以簽署人的密鑰核實",
    "the certificate was revoked before the time proven by the signature timestamp": "證書在簽署時間戳證明的時間之前已被撤銷",
    "the certificate does not match the trust-list profile of its root": "證書不符合其根證書在信任清單中的證書類別",
    "/ETSI.CAdES.detached without an ESS signing-certificate attribute": "/ETSI.CAdES.detached 簽署沒有 ESS signing-certificate 屬性",
    "the trust-list recognition of this profile was not in force at the signing time": "簽署時信任清單對此證書類別的認可並未生效",
    # certs.py
    "the signer certificate has no keyUsage extension": "簽署人證書沒有 keyUsage（密鑰用途）擴展",
    "the trust list has no roots": "信任清單沒有根證書",
    # levels.py
    "not PAdES baseline: no ESS signing-certificate-v2 attribute in the signed attributes": "並非 PAdES 基線：已簽署屬性中沒有 ESS signing-certificate-v2 屬性",
    "not PAdES baseline: a signingTime signed attribute is present (PAdES puts the time in /M)": "並非 PAdES 基線：含有 signingTime 已簽署屬性（PAdES 把時間放在 /M）",
    "no PAdES level: the signature is not intact": "沒有 PAdES 級別：簽署並不完整",
    # document.py: notes
    "the document has no signature": "文件沒有任何簽署",
}

# (English pattern, Chinese with {0}, {1}...): the groups are carried over, themselves translated when they
# are one of our sentences (an ETSI validation that stopped on our own timeout, for instance).
PATTERNS: list[tuple[str, str]] = [
    (
        r"the matched trust entry (\S+) is of kind '([^']*)', not a certificate type recognized under s\.22 or s\.34",
        "所配對的信任清單項目 {0} 屬「{1}」類，並非根據第22條或第34條認可的證書類別",
    ),
    (
        r"the issuing CA is not one the profile (\S+) allows",
        "簽發證書的核證機關並非證書類別 {0} 所容許的機關",
    ),
    (r"no certificate policy under (.+)", "沒有屬於 {0} 之下的證書政策"),
    (
        r"the certificate was revoked at (\S+), after the signing time; this does not affect a signature made before",
        "證書於 {0} 被撤銷，在簽署時間之後；這不影響之前作出的簽署",
    ),
    (r"the ETSI (\S+) validation stopped: (.+)", "ETSI {0} 核實程序中止：{1}"),
    (r"validation did not finish within (\S+) s", "核實未能在 {0} 秒內完成"),
    (
        r"the /ByteRange does not cover the document as PDF requires \(coverage (\S+)\)",
        "/ByteRange 未按 PDF 規定涵蓋文件（涵蓋範圍 {0}）",
    ),
    (r"the /ByteRange cannot be processed: (.+)", "無法處理 /ByteRange：{0}"),
    (
        r"the document was modified after signing in a way that is not allowed \(modification level (\S+)\)",
        "文件於簽署後以不允許的方式被修改（修改級別 {0}）",
    ),
    (
        r"(\d+) revisions follow the signature, more than the (\d+) this verifier analyses",
        "簽署之後有 {0} 個版本，多於本核實程式分析的 {1} 個",
    ),
    (r"the changes after signing cannot be analysed: (.+)", "無法分析簽署後的更改：{0}"),
    (
        r"the signer certificate's key usage \((.*)\) allows no signing",
        "簽署人證書的密鑰用途（{0}）不容許簽署",
    ),
    (r"the profile (\S+) requires key usage (.+)", "證書類別 {0} 要求密鑰用途 {1}"),
    (
        r"the signer's RSA key has (\d+) bits, fewer than (\d+)",
        "簽署人的 RSA 密鑰只有 {0} 位元，少於 {1} 位元",
    ),
    (r"the signer's public key cannot be read: (.+)", "無法讀取簽署人的公鑰：{0}"),
    (r"not valid at (\S+): (.+)", "於 {0} 無效：{1}"),
    (r"no certificate path to a trust-list root: (.+)", "沒有連接至信任清單根證書的證書路徑：{0}"),
    (r"a certificate of the chain was not valid at (\S+): (.+)", "證書鏈中有證書於 {0} 無效：{1}"),
    (r"the certificate chain does not validate: (.+)", "證書鏈未能通過核實：{0}"),
    (r"the certificate chain cannot be processed: (.+)", "無法處理證書鏈：{0}"),
    (
        r"not PAdES baseline: /SubFilter is (\S+), not /ETSI\.CAdES\.detached",
        "並非 PAdES 基線：/SubFilter 為 {0}，而非 /ETSI.CAdES.detached",
    ),
    (r"not PAdES baseline: signed attribute\(s\) (.+) missing", "並非 PAdES 基線：缺少已簽署屬性 {0}"),
    (r"the signature cannot be read: (.+)", "無法讀取簽署：{0}"),
    (
        r"not verified: the file exceeds this verifier's limits \((\d+) signatures, (\S+) s\)",
        "未經核實：檔案超出本核實程式的上限（{0} 個簽署、{1} 秒）",
    ),
    (r"the signature could not be verified: (.+)", "未能核實簽署：{0}"),
    (r"the document timestamp cannot be validated: (.+)", "未能核實文件時間戳：{0}"),
    (r"the signature fields cannot be enumerated: (.+)", "無法列出簽署欄位：{0}"),
]

_COMPILED = [(re.compile(p), zh) for p, zh in PATTERNS]


def reason_zh(text: str) -> str | None:
    """The Chinese of one of the verifier's sentences, or ``None`` when it is not one of ours."""
    if text in EXACT:
        return EXACT[text]
    for pattern, zh in _COMPILED:
        m = pattern.fullmatch(text)
        if m:
            return zh.format(*(reason_zh(g) or g for g in m.groups()))
    return None


def reason_zh_or_marked(text: str) -> str:
    """The Chinese, or pyHanko's English behind a Chinese label saying it is untranslated detail."""
    return reason_zh(text) or f"{UNTRANSLATED_PREFIX}{text}"
