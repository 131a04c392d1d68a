"""``iamsign batch sign`` as a real process against a running ``iamsign serve`` (SQLite, the sandbox mounted,
the iAM Smart+ test user on auto-approve): a folder of 50 PDFs plus a corrupt one, a rerun that signs
nothing again, and a service SIGKILLed mid-batch, restarted, and the run resumed to one signature per file."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fixtures.generate import simple_pdf

from .processes import REPO, ServiceProcess, cli, free_port

SIGNER = "A123456(3)"
STATE = ".iamsign-batch.json"
N_KILLED = 12


class Service:
    """One ``iamsign serve`` on its defaults (SQLite in DATA, the sandbox mounted), an API key, auto-approve."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.data = tmp / "data"
        self.port = free_port()
        self.env = {"IAMSIGN_SWEEP_INTERVAL_S": "0.3", **(env or {})}
        self.proc = ServiceProcess(
            "serve",
            ["serve", "--port", str(self.port), "--data-dir", str(self.data)],
            self.env,
            tmp,
            port=self.port,
        )
        self.proc.start()
        self.key = cli(["keys", "create", "Batch School", "--data-dir", str(self.data)], self.env).strip()
        self.auto_approve()

    @property
    def url(self) -> str:
        return self.proc.url

    def auto_approve(self) -> None:
        r = httpx.post(
            f"{self.url}/sandbox/v1/users/update",
            json={"hkid": SIGNER, "auto_action": "approve", "auto_delay_ms": 0},
            timeout=10,
        )
        assert r.status_code == 200, r.text

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def signed_document_rows(self) -> int:
        """Documents the service made by signing (the uploads have no signature)."""
        with sqlite3.connect(self.data / "iamsign.db") as db:
            return db.execute("SELECT count(*) FROM documents WHERE signature_count > 0").fetchone()[0]


def make_folder(root: Path, n: int) -> list[str]:
    """``n`` one-page letters in nested folders, one corrupt PDF and a text file; the PDFs' relative paths."""
    names = []
    for i in range(n):
        rel = f"dept-{i % 4}/{'sub-' + str(i % 3) + '/' if i % 2 else ''}letter {i:03}.pdf"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        simple_pdf(root / rel, text=f"letter number {i}")
        names.append(rel)
    (root / "dept-0" / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<\n%%EOF")
    (root / "notes.txt").write_text("not a PDF: ignored")
    return sorted(names)


def sign_cmd(svc: Service, folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "api.cli",
        "batch",
        "sign",
        str(folder),
        "--signer-hkid",
        SIGNER,
        "--server",
        svc.url,
        "--out",
        str(out),
        "--concurrency",
        "4",
        *extra,
    ]


def run_sign(
    svc: Service, folder: Path, out: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        sign_cmd(svc, folder, out, *extra),
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "IAMSIGN_API_KEY": svc.key},
    )


def batch_verify(svc: Service, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "batch",
            "verify",
            str(out),
            "--offline",
            "--data-dir",
            str(svc.data),
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def manifest(out: Path) -> dict[str, dict]:
    return {f["file"]: f for f in json.loads((out / "manifest.json").read_text())["files"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pyhanko_valid(svc: Service, pdf: Path) -> bool:
    """An independent check with pyHanko: the one signature intact and trusted, with the DSS only."""
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import DocumentSecurityStore, async_validate_pdf_signature

    _, _, der = pem.unarmor((svc.data / "sandbox" / "pki" / "root.cert.pem").read_bytes())
    root = asn1_x509.Certificate.load(der)

    async def run() -> bool:
        reader = PdfFileReader(io.BytesIO(pdf.read_bytes()))
        sigs = [s for s in reader.embedded_signatures if s.sig_object_type == "/Sig"]
        vc = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "require"}
        )
        status = await async_validate_pdf_signature(sigs[0], vc)
        await vc.aclose()
        return len(sigs) == 1 and status.bottom_line

    return asyncio.run(run())


def test_folder_of_50_signed_verified_corrupt_reported_and_a_rerun_signs_nothing(tmp_path):
    svc = Service(tmp_path)
    try:
        folder, out = tmp_path / "letters", tmp_path / "letters-signed"
        names = make_folder(folder, 50)

        first = run_sign(svc, folder, out)
        assert first.returncode == 1, first.stdout + first.stderr
        assert "Sign code: " in first.stdout and "/sign/bt_" in first.stdout
        summary = first.stdout.strip().splitlines()[-1]
        assert "50 of 51 files signed" in summary and "1 upload_failed" in summary, summary
        assert "Traceback" not in first.stderr

        files = manifest(out)
        assert sorted(files) == sorted([*names, "dept-0/broken.pdf"])
        broken = files.pop("dept-0/broken.pdf")
        assert broken["status"] == "upload_failed" and broken["error"].startswith("damaged_pdf:"), broken
        assert (
            broken["sha256_before"] == sha(folder / "dept-0" / "broken.pdf")
            and broken["sha256_after"] is None
        )
        for rel, f in files.items():
            assert f["status"] == "signed" and f["error"] is None, f
            assert f["sha256_before"] == sha(folder / rel) and f["sha256_after"] == sha(out / rel)
        rows = list(csv.DictReader((out / "manifest.csv").open()))
        assert len(rows) == 51 and {r["status"] for r in rows} == {"signed", "upload_failed"}
        state = json.loads((out / STATE).read_text())
        assert len(state["batches"]) == 1 and state["batches"][0]["status"] == "completed"
        assert SIGNER not in (out / STATE).read_text()  # the HKID is never written down

        checked = batch_verify(svc, out)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "verified 50 files: 50 TOTAL-PASSED" in checked.stdout
        assert pyhanko_valid(svc, out / names[0]) and pyhanko_valid(svc, out / names[-1])
        with svc.client() as c:
            batch = c.get(f"/v1/batches/{state['batches'][0]['id']}").json()
        assert batch["status"] == "completed" and batch["counts"]["completed"] == 50
        assert svc.signed_document_rows() == 50

        before = {rel: (sha(out / rel), (out / rel).stat().st_mtime_ns) for rel in names}
        again = run_sign(svc, folder, out)
        assert again.returncode == 1 and "Sign code" not in again.stdout, again.stdout + again.stderr
        assert "50 of 51 files signed" in again.stdout
        assert {rel: (sha(out / rel), (out / rel).stat().st_mtime_ns) for rel in names} == before
        assert len(json.loads((out / STATE).read_text())["batches"]) == 1  # no new batch
        assert svc.signed_document_rows() == 50
    finally:
        svc.proc.stop()


def test_service_killed_mid_batch_then_restarted_and_resumed_signs_each_file_once(tmp_path):
    svc = Service(tmp_path)
    run = None
    try:
        folder, out = tmp_path / "in", tmp_path / "out"
        names = make_folder(folder, N_KILLED)
        (folder / "dept-0" / "broken.pdf").unlink()
        env = {**os.environ, "IAMSIGN_API_KEY": svc.key}
        run = subprocess.Popen(
            sign_cmd(svc, folder, out, "--give-up-after", "2"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # kill the service as soon as the batch is approved and being signed (or, if that was too quick
        # to see, while the command is downloading)
        seen = None
        deadline = time.monotonic() + 60
        with svc.client() as c:
            while time.monotonic() < deadline and run.poll() is None:
                state_file = out / STATE
                batches = json.loads(state_file.read_text())["batches"] if state_file.exists() else []
                if batches:
                    seen = c.get(f"/v1/batches/{batches[0]['id']}").json()
                    if seen["status"] != "pending":
                        break
                time.sleep(0.05)
        assert seen is not None, "the command never started a batch"
        svc.proc.kill()
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 3, stdout + stderr
        assert "did not answer" in stderr and "run the same command again" in stderr, stderr
        assert "Traceback" not in stderr

        status = subprocess.run(
            [sys.executable, "-m", "api.cli", "batch", "status", str(out)],
            cwd=REPO,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0 and seen["id"] in status.stdout and "unreachable" in status.stdout, (
            status
        )

        # work left by the dead process is taken over once stale (default 120 s; shorter here, but longer
        # than re-embedding these files takes, or two embedders could race for one document)
        svc.proc.start(extra_env={"IAMSIGN_STALE_AFTER_S": "3"})
        resumed = run_sign(svc, folder, out)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr + svc.proc.log()
        assert f"all {N_KILLED} files signed" in resumed.stdout

        state = json.loads((out / STATE).read_text())
        assert [b["id"] for b in state["batches"]] == [seen["id"]], "the unfinished batch was continued"
        files = manifest(out)
        assert sorted(files) == names and all(f["status"] == "signed" for f in files.values())
        with svc.client() as c:
            batch = c.get(f"/v1/batches/{seen['id']}").json()
            assert batch["status"] == "completed", batch
            signed_ids = [d["signed_document_id"] for d in batch["documents"]]
            assert all(signed_ids) and len(set(signed_ids)) == N_KILLED
            assert {f["signed_document_id"] for f in files.values()} == set(signed_ids)
            for f in files.values():
                assert c.get(f"/v1/documents/{f['signed_document_id']}").json()["sha256"] == f["sha256_after"]
        assert svc.signed_document_rows() == N_KILLED, "every file signed exactly once"
        checked = batch_verify(svc, out)
        assert checked.returncode == 0 and f"{N_KILLED} TOTAL-PASSED" in checked.stdout, checked.stdout
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        svc.proc.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--level", "B-X"], "--level must be one of"),
        (["--out", "{folder}"], "must not be the source folder"),
        (["--server", "localhost:8000"], "must be an http:// or https:// URL"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args, message):
    folder = tmp_path / "in"
    folder.mkdir()
    simple_pdf(folder / "a.pdf")
    args = [a.format(folder=folder) for a in args]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "batch",
            "sign",
            str(folder),
            "--signer-hkid",
            SIGNER,
            "--api-key",
            "k",
            *(["--server", f"http://127.0.0.1:{free_port()}"] if "--server" not in args else []),
            *args,
        ],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_wrong_key_and_absent_server_end_with_one_clear_line(tmp_path):
    from .service_fixtures import running_service

    folder = tmp_path / "in"
    folder.mkdir()
    simple_pdf(folder / "a.pdf")
    simple_pdf(folder / "b.pdf")

    def sign(server: str, key: str, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "batch",
                "sign",
                str(folder),
                "--signer-hkid",
                SIGNER,
                "--server",
                server,
                "--out",
                str(out),
                "--give-up-after",
                "1",
            ],
            cwd=REPO,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "IAMSIGN_API_KEY": key},
        )

    with running_service(tmp_path / "data") as svc:
        wrong = sign(svc.url, "not-a-key", tmp_path / "out-wrong")
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr and "Traceback" not in wrong.stderr, wrong

    absent = sign(f"http://127.0.0.1:{free_port()}", "k", tmp_path / "out-absent")
    assert absent.returncode == 3 and "Traceback" not in absent.stderr, absent
    assert "did not answer" in absent.stderr and "run the same command again" in absent.stderr
    state = json.loads((tmp_path / "out-absent" / STATE).read_text())
    assert sorted(f["file"] for f in state["files"]) == ["a.pdf", "b.pdf"]  # kept for the next run


def test_declined_documents_get_a_new_batch_of_their_own_on_the_next_run(tmp_path):
    from sqlmodel import Session, select

    from api.store.models import Batch, BatchItem

    from .service_fixtures import running_service

    folder, out = tmp_path / "in", tmp_path / "out"
    names = make_folder(folder, 6)
    (folder / "dept-0" / "broken.pdf").unlink()
    with running_service(tmp_path / "data") as svc:
        env = {**os.environ, "IAMSIGN_API_KEY": svc.key}
        cmd = [
            sys.executable,
            "-m",
            "api.cli",
            "batch",
            "sign",
            str(folder),
            "--signer-hkid",
            SIGNER,
            "--server",
            svc.url,
            "--out",
            str(out),
            "--level",
            "B-B",
        ]
        run = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while not (out / STATE).exists() or not json.loads((out / STATE).read_text())["batches"]:
            assert time.monotonic() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.05)
        batch_id = json.loads((out / STATE).read_text())["batches"][0]["id"]
        with Session(svc.app.state.engine) as s:
            business_id = s.get(Batch, batch_id).business_id
            items = s.exec(
                select(BatchItem).where(BatchItem.batch_id == batch_id).order_by(BatchItem.position)
            ).all()
        declined = {items[1].document_id, items[4].document_id}
        hook = f"{svc.url}/sandbox/v1/requests/{business_id}"
        r = httpx.post(f"{hook}/decline", json={"ids": [items[1].id, items[4].id]}, timeout=10)
        assert r.status_code == 200, r.text
        assert httpx.post(f"{hook}/approve", json={"hkid": SIGNER}, timeout=10).status_code == 200
        try:
            stdout, stderr = run.communicate(timeout=60)
        finally:
            run.kill()
        assert run.returncode == 1 and "4 of 6 files signed; 2 declined" in stdout, stdout + stderr
        files = manifest(out)
        assert {f["document_id"] for f in files.values() if f["status"] == "declined"} == declined
        assert all(f["error"] for f in files.values() if f["status"] == "declined")
        kept = {rel: sha(out / rel) for rel, f in files.items() if f["status"] == "signed"}

        httpx.post(
            f"{svc.url}/sandbox/v1/users/update",
            json={"hkid": SIGNER, "auto_action": "approve", "auto_delay_ms": 0},
            timeout=10,
        )
        again = subprocess.run(
            cmd, cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0 and "all 6 files signed" in again.stdout, again.stdout + again.stderr
        state = json.loads((out / STATE).read_text())
        assert [b["documents"] for b in state["batches"]] == [6, 2]  # a new batch for the two declined only
        assert {rel: sha(out / rel) for rel in kept} == kept
        assert sorted(manifest(out)) == names and {f["status"] for f in manifest(out).values()} == {"signed"}
