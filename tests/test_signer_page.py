"""The signer page ``/sign/{id}`` in a real headless Chromium: the document's pages as server-rendered
images (first pages at once, the rest behind "more"), the sign code large, the expiry in Hong Kong time,
both languages, and a clear final state once approved or rejected; a batch page lists its documents and
an envelope page its signers. Screenshots are taken and checked for the page image's pixels.

The browser is the one of ``tests/test_verify_page.py`` (Debian chromium through the system chromedriver;
skipped with the reason when missing). ``IAMSIGN_SIGNER_SCREENSHOTS=/some/folder`` keeps the screenshots.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import httpx
import pytest

from fixtures.generate import simple_pdf

from .service_fixtures import running_service
from .test_verify_page import browser  # noqa: F401 - the headless Chromium fixture

CHAN, HO = "A123456(3)", "E567890(4)"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("signer-page")) as s:
        yield s


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    keep = os.environ.get("IAMSIGN_SIGNER_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path_factory.mktemp("signer-shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _upload(c, tmp_path: Path, name: str, pages: int) -> dict:
    pdf = simple_pdf(tmp_path / name, pages=pages, text=f"Agreement {name}")
    r = c.post("/v1/documents", files={"file": (name, pdf.read_bytes(), "application/pdf")})
    assert r.status_code == 201, r.text
    return r.json()


def _request(c, doc_id: str, hkid: str = CHAN) -> dict:
    r = c.post("/v1/signing-requests", json={"document_id": doc_id, "signer": {"hkid": hkid}, "level": "B-T"})
    assert r.status_code == 201, r.text
    return r.json()


def _open(driver, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))


def _loaded(driver, img) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)


def _wait_loaded(driver, imgs) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: all(_loaded(d, i) for i in imgs))


def _ink(png: bytes) -> float:
    """The share of clearly non-white pixels in a screenshot (text and lines of the rendered page)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    hist = image.histogram()
    dark = sum(hist[:160])
    return dark / (image.width * image.height)


def _check_page_image(driver, img, path: Path) -> None:
    """The img loaded from the server (natural size > 0) and shows a page with ink on it."""
    assert _loaded(driver, img)
    natural = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
    assert natural[0] > 400 and natural[1] > natural[0], natural  # A4 portrait, rendered server-side
    driver.execute_script("arguments[0].scrollIntoView()", img)
    png = img.screenshot_as_png
    path.write_bytes(png)
    assert 0 < _ink(png) < 0.5, f"the page image looks blank: {path}"


def test_signer_page_shows_the_pages_both_languages_and_the_final_state(svc, browser, tmp_path, shots):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with svc.client() as c:
        doc = _upload(c, tmp_path, "lease.pdf", pages=5)
        req = _request(c, doc["id"])
    page = httpx.get(f"{svc.url}/sign/{req['id']}", timeout=10)
    csp = page.headers["content-security-policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp and "img-src 'self'" in csp
    assert (
        "pdf.js" not in page.text.lower()
        and "https://" not in page.text.split("<body", 1)[1].split("open-iamsmart", 1)[0]
    )

    _open(browser, f"{svc.url}/sign/{req['id']}")
    text = browser.find_element(By.TAG_NAME, "body").text
    for words in (
        "Sign with iAM Smart+",
        "以「智方便+」簽署",
        "Hong Kong time",
        "香港時間",
        "5 pages",
        "5 頁",
    ):
        assert words in text, (words, text)
    code = browser.find_element(By.ID, "sign-code")
    assert code.text == req["sign_code"]
    assert float(code.value_of_css_property("font-size").removesuffix("px")) >= 48
    shown = browser.find_elements(By.CSS_SELECTOR, f"#doc-{doc['id']} > img.page")
    assert len(shown) == 3
    _wait_loaded(browser, shown[:1])
    browser.save_screenshot(str(shots / "request-pending.png"))
    _check_page_image(browser, shown[0], shots / "request-page1.png")

    more = browser.find_element(By.CSS_SELECTOR, f"#doc-{doc['id']} details.more")
    hidden = more.find_elements(By.CSS_SELECTOR, "img.page")
    assert len(hidden) == 2 and not hidden[0].is_displayed()
    more.find_element(By.TAG_NAME, "summary").click()
    _wait_loaded(browser, hidden)
    _check_page_image(browser, hidden[1], shots / "request-page5.png")

    # approve on the phone: the page's own script (allowed by its nonce) notices and shows the final state
    r = httpx.post(
        f"{svc.url}/sandbox/v1/phone/approve", json={"hkid": CHAN, "sign_code": req["sign_code"]}, timeout=10
    )
    assert r.status_code == 200, r.text
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "final-state"))
    final = browser.find_element(By.ID, "final-state").text
    assert "nothing more to do" in final and "已完成簽署" in final
    assert not browser.find_elements(By.ID, "sign-code") and not browser.find_elements(By.ID, "expires")
    assert browser.execute_script("return window.scrollY") == 0  # the final state is in view
    browser.save_screenshot(str(shots / "request-completed.png"))
    # what they signed: the signed revision, still rendered
    _wait_loaded(browser, browser.find_elements(By.CSS_SELECTOR, "img.page")[:1])


def test_a_rejected_request_says_so_in_both_languages(svc, browser, tmp_path, shots):  # noqa: F811
    from selenium.webdriver.common.by import By

    from api.store.models import SigningRequest

    with svc.client() as c:
        req = _request(c, _upload(c, tmp_path, "offer.pdf", pages=1)["id"])
    # A rejection by the browser's redirect is only a hint (issue 12, hole 1); the page is shown here as
    # it is once iAM Smart itself has confirmed one, which is what ends a request as rejected.
    flow = svc.app.state.flow

    async def confirmed_rejection() -> bool:
        with flow.session() as session:
            row = session.get(SigningRequest, req["id"])
            return flow._finish_unsuccessfully(
                session,
                row,
                "rejected",
                "D70001",
                "the signer rejected the request",
                actor="iamsmart",
                ack=False,
            )

    assert asyncio.run(confirmed_rejection())
    deadline = time.monotonic() + 30
    while httpx.get(f"{svc.url}/sign/{req['id']}/status", timeout=10).json()["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    _open(browser, f"{svc.url}/sign/{req['id']}")
    final = browser.find_element(By.ID, "final-state").text
    assert "You declined to sign" in final and "您已拒絕簽署" in final
    assert not browser.find_elements(By.ID, "sign-code")
    browser.save_screenshot(str(shots / "request-rejected.png"))


def test_batch_page_lists_documents_with_page_counts_and_previews(svc, browser, tmp_path, shots):  # noqa: F811
    from selenium.webdriver.common.by import By

    with svc.client() as c:
        docs = [_upload(c, tmp_path, f"letter-{i}.pdf", pages=i + 1) for i in range(3)]
        r = c.post(
            "/v1/batches",
            json={"document_ids": [d["id"] for d in docs], "signer": {"hkid": HO}, "level": "B-T"},
        )
        assert r.status_code == 201, r.text
        batch = r.json()
    _open(browser, f"{svc.url}/sign/{batch['id']}")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "3 documents" in text and "3 份文件" in text
    for i, d in enumerate(docs):
        section = browser.find_element(By.ID, f"doc-{d['id']}")
        assert f"letter-{i}.pdf" in section.text and f"{i + 1} 頁" in section.text
        first = section.find_elements(By.CSS_SELECTOR, ":scope > img.page")
        assert len(first) == 1
        browser.execute_script("arguments[0].scrollIntoView()", first[0])
        _wait_loaded(browser, first)
        _check_page_image(browser, first[0], shots / f"batch-doc{i}.png")
        assert len(section.find_elements(By.CSS_SELECTOR, "details.more img.page")) == i
    assert browser.find_element(By.ID, "sign-code").text == batch["sign_code"]
    browser.save_screenshot(str(shots / "batch-pending.png"))
    # another document's id is not served through this page
    other = httpx.get(f"{svc.url}/sign/{batch['id']}/documents/doc_nope/pages/1.png", timeout=10)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    with svc.client() as c:
        c.post(f"/v1/batches/{batch['id']}/cancel")


def test_envelope_page_lists_its_signers_and_the_document(svc, browser, tmp_path, shots):  # noqa: F811
    from selenium.webdriver.common.by import By

    with svc.client() as c:
        doc = _upload(c, tmp_path, "contract.pdf", pages=2)
        env = c.post(
            "/v1/envelopes", json={"document_id": doc["id"], "signers": [{"hkid": CHAN}, {"hkid": HO}]}
        ).json()
    _open(browser, f"{svc.url}/sign/{env['id']}")
    steps = browser.find_element(By.ID, "steps").text
    assert "Signer 1 / 第 1 位簽署人" in steps and "Waiting for earlier signers" in steps
    assert browser.find_element(By.ID, "sign-code").text == env["steps"][0]["sign_code"]
    imgs = browser.find_elements(By.CSS_SELECTOR, f"#doc-{doc['id']} > img.page")
    assert len(imgs) == 2
    _wait_loaded(browser, imgs[:1])
    _check_page_image(browser, imgs[0], shots / "envelope-page1.png")
    browser.save_screenshot(str(shots / "envelope-pending.png"))
    with svc.client() as c:
        assert c.post(f"/v1/envelopes/{env['id']}/cancel").status_code == 200
    _open(browser, f"{svc.url}/sign/{env['id']}")
    assert "發送者已取消此要求" in browser.find_element(By.ID, "final-state").text


def test_page_images_are_cached_per_document_and_go_with_it(svc, tmp_path):
    with svc.client() as c:
        doc = _upload(c, tmp_path, "memo.pdf", pages=2)
        req = _request(c, doc["id"])
        url = f"/sign/{req['id']}/documents/{doc['id']}/pages/2.png"
        first = httpx.get(f"{svc.url}{url}", timeout=30)
        assert first.status_code == 200 and first.headers["content-type"] == "image/png"
        assert first.content.startswith(b"\x89PNG")
        store = svc.app.state.store
        cached = list(store.path_for(doc["sha256"]).with_suffix(".previews").iterdir())
        assert [p.name for p in cached] == ["p2-w820.png"]
        again = httpx.get(f"{svc.url}{url}", timeout=30)
        assert again.content == first.content
        assert httpx.get(f"{svc.url}/sign/{req['id']}/documents/{doc['id']}/pages/3.png").status_code == 404
        assert c.post(f"/v1/signing-requests/{req['id']}/cancel").status_code == 200
        assert c.delete(f"/v1/documents/{doc['id']}").status_code == 200
        assert not store.path_for(doc["sha256"]).with_suffix(".previews").exists()
        gone = httpx.get(f"{svc.url}{url}", timeout=30)
        assert gone.status_code in (404, 410) and "error" in gone.json()
