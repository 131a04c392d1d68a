"""``GET /verify`` in a real headless Chromium: upload a signed, a tampered, an unsigned and a garbage file.

The browser is the Debian ``chromium`` package driven by Selenium through the system ``chromedriver``
(``Service('/usr/bin/chromedriver')``, so Selenium Manager never runs and nothing is downloaded). The
tests skip, with the reason, when either binary or the ``selenium`` package is missing (``make
install-test`` installs them). Set ``IAMSIGN_VERIFY_SCREENSHOT=/some/file.png`` to keep the screenshot of
the passed report; otherwise it goes to the test's temp folder.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest

from fixtures.generate import simple_pdf

from .conftest import asn1
from .service_fixtures import Service
from .support import LoopbackServer
from .verify_fixtures import flip_signed_byte, sign

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SIGNER_HKID = "A123456(3)"  # the sandbox's iAM Smart+ user, CHAN Tai Man 陳大文

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,900",
)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    """The service on SQLite with its sandbox: the page and the verification do not depend on the database."""
    from sqlmodel import Session

    from api.app import create_app
    from api.settings import Settings
    from api.store.keys import create_api_key

    data = tmp_path_factory.mktemp("verify-page-service")
    server = LoopbackServer()
    settings = Settings(
        data_dir=data,
        host="127.0.0.1",
        port=server.port,
        max_upload_bytes=2 * 1024 * 1024,
        sweep_interval_s=0.3,
    )
    app = create_app(settings)
    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "Verify page tests")
    server.start(app)
    yield Service(server.url, app, settings, key, key)
    server.stop()
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def files(service, tmp_path_factory) -> dict[str, Path]:
    """A PDF signed through the service and the sandbox phone at B-LTA, a tampered copy, others, garbage."""
    d = tmp_path_factory.mktemp("verify-page-files")
    letter = simple_pdf(d / "letter.pdf", pages=1)
    with service.client() as c:
        upload = {"file": ("letter.pdf", letter.read_bytes(), "application/pdf")}
        doc = c.post("/v1/documents", files=upload).json()
        req = c.post(
            "/v1/signing-requests",
            json={
                "document_id": doc["id"],
                "signer": {"hkid": SIGNER_HKID},
                "mode": "hash",
                "level": "B-LTA",
            },
        ).json()
        assert (
            c.post(
                "/sandbox/v1/phone/approve", json={"hkid": SIGNER_HKID, "sign_code": req["sign_code"]}
            ).status_code
            == 200
        )
        deadline = time.monotonic() + 60
        while (body := c.get(f"/v1/signing-requests/{req['id']}").json())["status"] == "pending":
            assert time.monotonic() < deadline, "the signing request did not complete"
            time.sleep(0.1)
        assert body["status"] == "completed", body
        signed = d / "signed-lta.pdf"
        signed.write_bytes(c.get(f"/v1/signing-requests/{req['id']}/signed-document").content)
    # The service's own signature is an honest /adbe.pkcs7.detached one (the sandbox user's certificate is
    # not known before signing), so it reaches no PAdES level; a baseline B-LTA file made with the same
    # sandbox PKI shows the level.
    from signing.model import PadesLevel
    from signing.sandbox.pki import SandboxPki
    from signing.services import SigningServices

    pki = SandboxPki(service.settings.sandbox_pki_dir)
    services = SigningServices.with_tsa_url(
        f"{pki.base_url}/tsa", trust_roots=[asn1(pki.root)], other_certs=[asn1(pki.issuing_ca)]
    )
    baseline = asyncio.run(
        sign(
            letter,
            d / "baseline-lta.pdf",
            pki,
            pki.issue_signer("WONG Ka Yan 黃嘉欣"),
            PadesLevel.B_LTA,
            services,
        )
    )
    claimed = asyncio.run(
        sign(
            letter,
            d / "baseline-bb.pdf",
            pki,
            pki.issue_signer("LEE Siu Ming 李小明"),
            PadesLevel.B_B,
            services,
        )
    )
    garbage = d / "garbage.pdf"
    garbage.write_bytes(b"GIF89a\x01\x00 this is not a PDF at all")
    return {
        "signed": signed,
        "tampered": flip_signed_byte(signed, d / "tampered.pdf"),
        "unsigned": letter,
        "garbage": garbage,
        "baseline": baseline,
        "claimed": claimed,
    }


def _fontconfig(folder: Path) -> dict[str, str]:
    """Let Chromium find the Noto Sans CJK TC font the project already installs, for a readable screenshot."""
    try:
        import cvttf_NotoSansCJK_Regular
    except ImportError:
        return {}
    fonts = folder / "fonts"
    fonts.mkdir()
    (fonts / "NotoSansCJKtc-Regular.otf").symlink_to(cvttf_NotoSansCJK_Regular.get_TTF_path())
    conf = folder / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
        f"<dir>{fonts}</dir><cachedir>{folder / 'fc-cache'}</cachedir></fontconfig>"
    )
    return {"FONTCONFIG_FILE": str(conf)}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium from the system packages, through the system chromedriver (no Selenium Manager)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(
            f"headless browser test needs the Debian packages chromium and chromium-driver "
            f"(missing {', '.join(missing)}; `make install-test` installs them as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="the selenium package is not installed")
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common import selenium_manager

    def no_download(*_a, **_k):  # the driver path is explicit; Selenium Manager must never be asked
        raise AssertionError("Selenium Manager was called")

    mp = pytest.MonkeyPatch()
    mp.setattr(selenium_manager.SeleniumManager, "binary_paths", no_download)
    folder = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    env = {**os.environ, **_fontconfig(folder)}
    driver = webdriver.Chrome(service=ChromeService(str(CHROMEDRIVER), env=env), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        mp.undo()


def _upload(browser, service: Service, path: Path, offline: bool = False):
    """Open /verify afresh, choose ``path``, press Verify, wait for the report or the error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{service.url}/verify")
    browser.find_element(By.ID, "file").send_keys(str(path))
    if offline:
        browser.find_element(By.ID, "offline").click()
    browser.find_element(By.ID, "verify-button").click()
    WebDriverWait(browser, 90).until(
        lambda d: (
            d.find_element(By.ID, "result").is_displayed() or d.find_element(By.ID, "error").is_displayed()
        )
    )
    return browser


def _console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _text(browser, css: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css).text


def test_page_needs_no_api_key_and_locks_down_scripts(service):
    r = httpx.get(f"{service.url}/verify", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "connect-src 'self'" in csp and "unsafe-inline" not in csp
    assert 'action="/v1/verifications"' in r.text  # the one verification endpoint
    assert "What this verification cannot judge" in r.text and "本核實不能判斷的事項" in r.text


def test_every_limb_reason_has_a_chinese_translation(test_pki):
    """The page translates eto.py's reasons by their exact text: a new or reworded reason must be added."""
    import itertools
    import re

    from api.routes.verify_page import _REASONS_ZH
    from signing.trust import ProfileKind
    from signing.verify.eto import EtoInputs, assess
    from signing.verify.report import Checks, Indication, TimeSource

    from .verify_fixtures import recognized_trust

    kind_reason = re.compile(
        r"^the matched trust entry (\S+) is of kind '([^']+)', not a certificate type "
        r"recognized under s\.22 or s\.34$"
    )  # the same pattern as the page script
    profiles = [
        None,
        *(
            recognized_trust(test_pki.pki, kind=k).profiles[0]
            for k in (ProfileKind.RECOGNIZED, ProfileKind.SANDBOX)
        ),
    ]
    seen: set[str] = set()
    for ok, maybe, source, profile in itertools.product(
        (True, False), (True, False, None), TimeSource, profiles
    ):
        checks = Checks(
            integrity=ok,
            signature_value=ok,
            recognized_ca=ok,
            valid_at_signing_time=ok,
            not_revoked=maybe,
            key_usage=ok,
            unmodified=ok,
            signer_certificate_bound=maybe,
            chain_found=ok,
            certificate_policy=maybe,
            recognition_in_force=maybe,
        )
        eto = assess(EtoInputs(checks, Indication.INDETERMINATE, source, profile))
        seen.update(r for reasons in eto.reasons.values() for r in reasons)
    missing = [r for r in seen if r not in _REASONS_ZH and not kind_reason.match(r)]
    assert not missing, missing
    assert any(kind_reason.match(r) for r in seen)


def test_service_signed_lta_file_passes(browser, service, files, tmp_path):
    from selenium.webdriver.common.by import By

    upload = {"file": ("signed.pdf", files["signed"].read_bytes(), "application/pdf")}
    expected = httpx.post(
        f"{service.url}/v1/verifications", params={"offline": "true"}, files=upload, timeout=60
    ).json()
    (sig,) = expected["signatures"]
    assert sig["indication"] == "TOTAL-PASSED"

    _upload(browser, service, files["signed"], offline=True)
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "overall").get_attribute("data-state") == "valid"
    card = browser.find_element(By.CSS_SELECTOR, "article.sig")
    assert card.get_attribute("data-indication") == "TOTAL-PASSED"
    assert "passed" in card.get_attribute("class").split()
    badge = card.find_element(By.CSS_SELECTOR, ".badge").text
    assert "PASSED" in badge and "通過" in badge
    name = card.find_element(By.CSS_SELECTOR, ".signer-name").text
    assert name == sig["signer"]["name"] == "CHAN Tai Man 陳大文"
    level = card.find_element(By.CSS_SELECTOR, ".pades-level").text
    assert level == (sig["pades_level"] or "none (not PAdES baseline) · 無（並非 PAdES 基線）")
    when = card.find_element(By.CSS_SELECTOR, ".time-source").text
    assert "proven by a trusted signature timestamp" in when and "由受信任的簽署時間戳證明" in when
    assert card.find_element(By.CSS_SELECTOR, ".signing-time").text.startswith(sig["signing_time"][:10])

    limbs = {li.get_attribute("data-limb"): li.text for li in card.find_elements(By.CSS_SELECTOR, "li.limb")}
    assert list(limbs) == [
        "supported_by_recognized_certificate",
        "generated_within_validity",
        "used_in_accordance_with_terms",
    ]
    for key, en, zh in [
        ("supported_by_recognized_certificate", "supported by a recognized certificate", "獲認可證書支持"),
        (
            "generated_within_validity",
            "generated within the validity of that certificate",
            "在該證書有效期內產生",
        ),
        (
            "used_in_accordance_with_terms",
            "used in accordance with the terms of that certificate",
            "按照該證書的條款使用",
        ),
    ]:
        assert en in limbs[key] and zh in limbs[key]
        assert "Evidence" in limbs[key] and "證據" in limbs[key]
        # A sandbox certificate is never a recognized one: every limb says "not shown", with the reason.
        assert sig["eto"][key] is False and "not shown" in limbs[key] and "未能證明" in limbs[key]
    limb_c = limbs["supported_by_recognized_certificate"]
    assert "certificate chains to a recognized CA of the trust list" in limb_c
    assert "kind 'sandbox'" in limb_c and "屬「sandbox」類" in limb_c
    assert "not revoked at the signing time" in limbs["generated_within_validity"]
    assert "key usage allows signing" in limbs["used_in_accordance_with_terms"]
    assert "Testing certificate" in _text(browser, "article.sig .note")

    limits = _text(browser, "#limits")
    for phrase in (
        "government entity",
        "consented",
        "Schedule 1",
        "Not legal advice",
        "政府實體",
        "同意",
        "附表1",
        "並非法律意見",
    ):
        assert phrase in limits
    assert _console_errors(browser) == []

    # One full-height screenshot of the report, to look at (never committed).
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, min(height + 120, 6000))
    shot = Path(os.environ.get("IAMSIGN_VERIFY_SCREENSHOT") or tmp_path / "verify-page.png")
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.set_window_size(1100, 900)


def test_pades_baseline_lta_file_shows_its_level(browser, service, files):
    from selenium.webdriver.common.by import By

    _upload(browser, service, files["baseline"], offline=True)
    card = browser.find_element(By.CSS_SELECTOR, "article.sig")
    assert card.get_attribute("data-indication") == "TOTAL-PASSED"
    assert card.find_element(By.CSS_SELECTOR, ".signer-name").text == "WONG Ka Yan 黃嘉欣"
    assert card.find_element(By.CSS_SELECTOR, ".pades-level").text == "B-LTA"
    assert "Document timestamp" in _text(browser, "#doc-timestamps")
    assert _console_errors(browser) == []


def test_claimed_time_is_shown_as_only_claimed(browser, service, files):
    from selenium.webdriver.common.by import By

    _upload(browser, service, files["claimed"], offline=True)
    card = browser.find_element(By.CSS_SELECTOR, "article.sig")
    assert card.find_element(By.CSS_SELECTOR, ".pades-level").text == "B-B"
    when = card.find_element(By.CSS_SELECTOR, ".time-source").text
    assert "only claimed by the signer (not proof)" in when and "只是簽署人自稱（並非證明）" in when
    limb = card.find_element(By.CSS_SELECTOR, 'li.limb[data-limb="generated_within_validity"]').text
    assert "the signing time is not proven by a trusted timestamp (only claimed)" in limb
    assert "簽署時間未有受信任的時間戳證明（只是自稱）" in limb
    assert _console_errors(browser) == []


def test_tampered_file_fails(browser, service, files):
    from selenium.webdriver.common.by import By

    _upload(browser, service, files["tampered"], offline=True)
    assert browser.find_element(By.ID, "overall").get_attribute("data-state") == "not-valid"
    card = browser.find_element(By.CSS_SELECTOR, "article.sig")
    assert card.get_attribute("data-indication") == "TOTAL-FAILED"
    assert "FAILED" in card.find_element(By.CSS_SELECTOR, ".badge").text
    assert "失敗" in card.find_element(By.CSS_SELECTOR, ".badge").text
    why = card.find_element(By.CSS_SELECTOR, ".indication").text
    assert "HASH_FAILURE" in why and "the document bytes covered by the signature were changed" in why
    assert "簽署所涵蓋的文件內容已被更改" in why
    assert _console_errors(browser) == []


def test_unsigned_file_says_there_is_no_signature(browser, service, files):
    from selenium.webdriver.common.by import By

    _upload(browser, service, files["unsigned"])
    overall = browser.find_element(By.ID, "overall")
    assert overall.get_attribute("data-state") == "no-signature"
    assert "This file has no signature" in overall.text and "此檔案沒有任何簽署" in overall.text
    assert browser.find_elements(By.CSS_SELECTOR, "article.sig") == []
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_garbage_shows_a_clear_error(browser, service, files):
    from selenium.webdriver.common.by import By

    _upload(browser, service, files["garbage"])
    error = browser.find_element(By.ID, "error")
    assert error.get_attribute("data-code") == "not_a_pdf"
    assert "This file is not a PDF." in error.text and "此檔案並非 PDF 檔案。" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert "Traceback" not in browser.page_source and "Exception" not in browser.page_source
    # The form is usable again for the next file.
    assert browser.find_element(By.ID, "verify-button").is_enabled()
    errors = _console_errors(browser)  # only the refused request itself may be logged
    assert all("415" in m for m in errors), errors
