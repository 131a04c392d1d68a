"""The Traditional Chinese report leaves no reason in English: every sentence the verifier writes has its
Chinese (signing/verify/reasons_zh.py), and the zh-Hant text report uses it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
import re

import pytest

from signing.trust import ProfileKind, TrustProfile
from signing.verify.eto import EtoInputs, assess
from signing.verify.reasons_zh import EXACT, PATTERNS, UNTRANSLATED_PREFIX, reason_zh
from signing.verify.render import render_text
from signing.verify.report import (
    Checks,
    EtoAssessment,
    Indication,
    TimeSource,
    VerificationReport,
)
from signing.verify.signature import broken_signature, unchecked_signature

CJK = re.compile(r"[\u4e00-\u9fff]")
TRISTATE = (True, False, None)
ETO_FIELDS = (
    "integrity",
    "signature_value",
    "unmodified",
    "signer_certificate_bound",
    "chain_found",
    "recognized_ca",
    "valid_at_signing_time",
    "not_revoked",
    "recognition_in_force",
    "key_usage",
    "certificate_policy",
    "crypto_strength",
)


def profile(kind: ProfileKind | None) -> TrustProfile | None:
    return None if kind is None else TrustProfile(id=f"p-{kind.value}", name="P", root=None, kind=kind)  # type: ignore[arg-type]


def eto_cases():
    """Every limb reason assess() can give: each field alone at each value, plus a seeded random sample."""
    rng = random.Random(15)
    base = dict.fromkeys(ETO_FIELDS, True)
    combos = [dict(base)]
    for name, value in itertools.product(ETO_FIELDS, TRISTATE):
        combos.append({**base, name: value})
    combos += [{name: rng.choice(TRISTATE) for name in ETO_FIELDS} for _ in range(1500)]
    for values in combos:
        checks = Checks(**values)
        for source, kind in itertools.product(TimeSource, (None, *ProfileKind)):
            yield assess(EtoInputs(checks, Indication.INDETERMINATE, source, profile(kind)))


def test_every_eto_reason_has_its_chinese():
    seen = set()
    for eto in eto_cases():
        for reasons in eto.reasons.values():
            seen.update(reasons)
    seen |= {
        r
        for s in (broken_signature("S", "x"), unchecked_signature("S", "x"))
        for rs in s.eto.reasons.values()
        for r in rs
    }
    assert len(seen) >= 17  # every kind of reason eto.py writes, reached
    missing = sorted(r for r in seen if reason_zh(r) is None)
    assert not missing, missing
    assert all(CJK.search(reason_zh(r)) for r in seen)


def test_patterns_carry_the_details_over_and_translate_nested_sentences():
    assert reason_zh("the ETSI LTA validation stopped: validation did not finish within 20 s") == (
        "ETSI LTA 核實程序中止：核實未能在 20 秒內完成"
    )
    kind = "the matched trust entry iamsign-sandbox is of kind 'sandbox', not a certificate type recognized under s.22 or s.34"
    assert (
        reason_zh(kind)
        == "所配對的信任清單項目 iamsign-sandbox 屬「sandbox」類，並非根據第22條或第34條認可的證書類別"
    )
    assert reason_zh("something pyHanko said") is None
    for pattern, zh in PATTERNS:
        assert re.compile(pattern).groups == len(re.findall(r"\{\d\}", zh)), pattern
    assert all(CJK.search(zh) for zh in EXACT.values())


def _most_reasons() -> EtoAssessment:
    return max(eto_cases(), key=lambda e: sum(len(v) for v in e.reasons.values()))


def _kind_reason() -> EtoAssessment:
    return next(e for e in eto_cases() if any("of kind" in r for rs in e.reasons.values() for r in rs))


@pytest.mark.parametrize("pick", [_most_reasons, _kind_reason])
def test_zh_report_has_no_english_reason(pick):
    eto: EtoAssessment = pick()
    sig = dataclasses.replace(
        broken_signature("Signature1", "the signature value does not verify with the signer's key"),
        eto=eto,
        reasons=(
            "the signature value does not verify with the signer's key",
            "not PAdES baseline: /SubFilter is /adbe.pkcs7.detached, not /ETSI.CAdES.detached",
            "a pyHanko message nobody translated",
        ),
    )
    report = VerificationReport(
        signatures=(sig,),
        file_sha256="ab" * 32,
        file_size=804,
        revisions=2,
        validation_time=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
        trust_list_skipped=("hkpost-2",),
        notes=("the document has no signature",),
    )
    text = render_text(report, "zh-Hant")
    english = [r for rs in eto.reasons.values() for r in rs] + list(sig.reasons[:2]) + list(report.notes)
    for sentence in english:
        assert sentence not in text, sentence
    assert f"{UNTRANSLATED_PREFIX}a pyHanko message nobody translated" in text
    assert "bytes" not in text and "revision(s)" not in text and "skipped" not in text
    assert "簽署未能通過技術檢查" in text or "檔案內的證據不足" in text or "未能證明證書屬認可證書" in text
    assert all(s in render_text(report, "en") for s in english)
