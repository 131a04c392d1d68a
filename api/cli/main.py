"""The ``iamsign`` command line."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="iamsign: PDF signing with iAM Smart+ (and its sandbox).")


@app.callback()
def _root() -> None:
    """iamsign: PDF signing with iAM Smart+ (and its sandbox)."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("./data"), help="Folder for the database, documents and sandbox PKI."),
) -> None:
    """Run the service on its embedded defaults (SQLite, local files, the built-in sandbox)."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(host=host, port=port, data_dir=data_dir)
    application = create_app(settings)
    typer.echo(f"iamsign listening on {settings.base_url}  (data in {data_dir.resolve()})")
    typer.echo(f"  API docs:        {settings.base_url}/docs")
    if settings.sandbox_enabled:
        typer.echo(f"  sandbox:         {settings.base_url}/sandbox/  (simulated phones, users, root CA)")
        typer.echo(f"  sandbox root CA: {settings.base_url}/sandbox/pki/root.pem")
    typer.echo('Try it: create a key with `iamsign keys create "My School" --data-dir DATA`, then follow the')
    typer.echo("        README's 'Try it by hand' (upload, signing request, approve on the sandbox phone).")
    uvicorn.run(application, host=host, port=port, log_level="info", proxy_headers=False)


@app.command()
def worker(
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder (same as the replicas')."),
    workers: int = typer.Option(2, min=1, max=64, help="Worker threads."),
) -> None:
    """Run background workers only (embedding, expiry sweep, webhooks); give it the replicas' IAMSIGN_* environment."""
    import signal
    import threading

    from api.context import ServiceContext
    from api.settings import Settings

    settings = Settings(data_dir=data_dir)
    ctx = ServiceContext(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ctx.queue.start_consumer(workers)
    where = settings.queue_url or f"SQLite queue in {(data_dir / 'queue.db').resolve()}"
    typer.echo(f"iamsign worker: {workers} thread(s) on {where}; Ctrl+C to stop")
    stop.wait()
    ctx.queue.stop_consumer()


iamsmart_app = typer.Typer(no_args_is_help=True, help="Talk to iAM Smart with this service's credentials.")
app.add_typer(iamsmart_app, name="iamsmart")


@iamsmart_app.command("renew-key")
def iamsmart_renew_key(
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
) -> None:
    """revokeKey + getKey: make iAM Smart issue a CEK under the current KEK now (after a KEK rollover)."""
    import asyncio

    from api.flows.iamsmart_setup import client_config
    from api.settings import Settings
    from signing.iamsmart.client import IamSmartClient
    from signing.iamsmart.errors import IamSmartError

    async def renew() -> str:
        async with IamSmartClient(client_config(Settings(data_dir=data_dir))) as client:
            await client.revoke_key()
            cek = await client.get_key()
            return cek.pub_key

    try:
        pub = asyncio.run(renew())
    except IamSmartError as exc:
        typer.echo(f"iamsign iamsmart renew-key: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"new CEK issued under the KEK whose public key starts {pub[:24]}...")


keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Organisation the key belongs to (created if new)."),
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
    key_name: str = typer.Option("default", help="A label for this key."),
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored)."""
    from sqlmodel import Session

    from api.settings import Settings
    from api.store.db import make_engine, migrate
    from api.store.keys import create_api_key

    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    with Session(engine) as session:
        secret, row = create_api_key(session, name, key_name)
        organisation_id = row.organisation_id
    from api.store.secrets import load_or_create_secret
    from api.worker.webhooks import webhook_secret_for

    server_secret = load_or_create_secret(settings.data_dir, "server", settings.server_secret)
    typer.echo(secret)
    typer.echo(f"(API key for {name!r}; shown once, store it now)", err=True)
    typer.echo(
        f"(webhook secret of {name!r}: {webhook_secret_for(server_secret, organisation_id).decode()})",
        err=True,
    )


sandbox_app = typer.Typer(invoke_without_command=True, help="Run the iAM Smart sandbox alone, or manage it.")
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.callback()
def sandbox(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("./data"), help="Folder for the sandbox's PKI, services and users."),
) -> None:
    """Serve the iAM Smart sandbox alone, on the same paths as when mounted (/sandbox/api/v1/...)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from api.sandbox.app import create_sandbox_server
    from api.settings import Settings

    settings = Settings(host=host, port=port, data_dir=data_dir)
    application = create_sandbox_server(settings)
    typer.echo(f"iAM Smart sandbox on {settings.base_url}/sandbox  (data in {data_dir.resolve()})")
    typer.echo(f"  API base:        {settings.base_url}/sandbox/api/v1")
    typer.echo(f"  users / phones:  {settings.base_url}/sandbox/")
    typer.echo(f"  root CA:         {settings.base_url}/sandbox/v1/pki/root.pem")
    uvicorn.run(application, host=host, port=port, log_level="info", proxy_headers=False)


@sandbox_app.command("add-service")
def sandbox_add_service(
    client_id: str = typer.Option(..., help="The online service's clientID."),
    kek_public_key: Path = typer.Option(..., help="PEM file of the service's key-encryption public key."),
    redirect_uri: list[str] = typer.Option(
        ..., help="A registered redirect URI (repeatable; '*' suffix = prefix)."
    ),
    scope: list[str] = typer.Option([], help="A granted scope (repeatable; default: all)."),
    data_dir: Path = typer.Option(Path("./data"), help="The sandbox's data folder."),
) -> None:
    """Register an online service with the sandbox and print its client secret once."""
    from api.sandbox.app import service_registry
    from signing.sandbox.registry import RegistryError

    try:
        service = service_registry(data_dir).register(
            client_id, kek_public_pem=kek_public_key.read_text(), redirect_uris=redirect_uri, scopes=scope
        )
    except (RegistryError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(service.client_secret)
    typer.echo(f"(client secret of {client_id!r}; shown once, store it now)", err=True)


@app.command()
def verify(
    file: Path = typer.Argument(..., help="The signed PDF to verify."),
    trust: list[Path] = typer.Option(
        [], "--trust", help="Add this root (PEM/DER) as a recognized CA, no policy constraint."
    ),
    trust_list: Path | None = typer.Option(
        None, "--trust-list", help="Trust-list TOML (default: certs/trust-list.toml)."
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Use only the validation data in the file; fetch nothing."
    ),
    at: str | None = typer.Option(None, "--at", help="Validate as of this past moment (ISO 8601)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report."),
    lang: str = typer.Option("en", "--lang", help="Language of the text report: en or zh-Hant."),
    data_dir: Path = typer.Option(
        Path("./data"),
        "--data-dir",
        envvar="IAMSIGN_DATA_DIR",
        help="Data folder (for the sandbox root named by the trust list).",
    ),
) -> None:
    """Verify every signature of FILE; exit 0 if all TOTAL-PASSED, 1 if not (or none), 2 if unreadable."""
    import datetime as dt
    import json
    import logging
    import sys

    from signing.errors import VerificationError
    from signing.trust import DEFAULT_TRUST_LIST, TrustList, load_certificates
    from signing.verify import VerifyOptions, render_text, verify_pdf_sync

    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    def fail(code: str, message: str) -> None:
        typer.echo(f"iamsign verify: {message}", err=True)
        if as_json:
            typer.echo(json.dumps({"error": {"code": code, "message": message}}))
        raise typer.Exit(2)

    if lang not in ("en", "zh-Hant"):
        fail("invalid_option", f"--lang must be en or zh-Hant, not {lang!r}")
    moment = None
    if at is not None:
        try:
            moment = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            fail("invalid_option", f"--at {at!r} is not an ISO 8601 date or time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    try:
        trusted = TrustList.load(trust_list or DEFAULT_TRUST_LIST, data_dir=data_dir)
        extra = [c for pem_file in trust for c in _load_trust_file(load_certificates, pem_file)]
        if extra:
            trusted = trusted.with_roots(extra)
        report = verify_pdf_sync(file, VerifyOptions(trust=trusted, offline=offline, at=moment))
    except VerificationError as exc:
        fail(exc.code, exc.message)
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(render_text(report, lang))
    raise typer.Exit(0 if report.valid else 1)


batch_app = typer.Typer(
    no_args_is_help=True, help="Sign a folder of PDFs as one batch (one approval), resumably."
)
app.add_typer(batch_app, name="batch")


_BATCH_SIGN_HELP = (
    "Upload every PDF of FOLDER, start one batch, print the sign code, download the signed files (same relative "
    "paths) and write manifest.json and manifest.csv into OUTDIR (default: FOLDER-signed next to FOLDER).\n\n"
    "Run it again to resume: finished files are skipped, an unfinished batch is followed, and a new batch is "
    "started only for the files not yet signed.\n\n"
    "Exit 0 when every file was signed, 1 when some were not, 2 on a usage error, 3 when the server stayed "
    "unreachable (the state is kept in OUTDIR: run the command again)."
)


@batch_app.command("sign", help=_BATCH_SIGN_HELP, short_help="Sign a folder of PDFs as one batch, resumably.")
def batch_sign(
    folder: Path = typer.Argument(..., help="Folder of PDFs (every *.pdf below it, recursively)."),
    signer_hkid: str = typer.Option(
        ..., "--signer-hkid", help="The signer's HKID, e.g. A123456(3) (never stored)."
    ),
    server: str = typer.Option(
        "http://127.0.0.1:8000", "--server", envvar="IAMSIGN_SERVER", help="The service."
    ),
    api_key: str = typer.Option(
        ..., "--api-key", envvar="IAMSIGN_API_KEY", help="API key (or IAMSIGN_API_KEY)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Output folder (default: FOLDER-signed next to FOLDER); "
        "it also keeps the manifests and the state that makes runs resumable.",
    ),
    level: str = typer.Option("B-LTA", "--level", help="PAdES level: B-B, B-T, B-LT or B-LTA."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Uploads/downloads at a time."),
    reason: str | None = typer.Option(None, "--reason", help="Reason recorded in each signature."),
    give_up_after: float = typer.Option(
        120.0,
        "--give-up-after",
        min=0,
        help="Seconds to keep retrying an unreachable server before exiting 3.",
    ),
    timeout: float = typer.Option(3600.0, "--timeout", min=1, help="Seconds to wait for a batch to finish."),
) -> None:
    """Sign a folder of PDFs as one batch, resumably (help: _BATCH_SIGN_HELP)."""
    from api.cli.batch import SignConfig, UsageError, default_out, run_sign

    try:
        code = run_sign(
            SignConfig(
                source=folder,
                out=out or default_out(folder),
                server=server,
                api_key=api_key,
                hkid=signer_hkid,
                level=level,
                concurrency=concurrency,
                reason=reason,
                give_up_after=give_up_after,
                timeout=timeout,
            )
        )
    except UsageError as exc:
        typer.echo(f"iamsign batch sign: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@batch_app.command("status")
def batch_status(
    out: Path = typer.Argument(Path("."), help="The output folder of `iamsign batch sign` (default: here)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="IAMSIGN_API_KEY", help="With a key, also ask the server about each batch."
    ),
    server: str | None = typer.Option(
        None, "--server", help="Ask this server (default: the one in the state)."
    ),
) -> None:
    """What the folder's state file says, and what the server says of its batches."""
    from api.cli.batch import run_status

    raise typer.Exit(run_status(out, api_key, server))


@batch_app.command("verify")
def batch_verify(
    out: Path = typer.Argument(..., help="The output folder of `iamsign batch sign`."),
    trust: list[Path] = typer.Option(
        [], "--trust", help="Add this root (PEM/DER) as a recognized CA, no policy constraint."
    ),
    trust_list: Path | None = typer.Option(
        None, "--trust-list", help="Trust-list TOML (default: certs/trust-list.toml)."
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Use only the validation data in the files; fetch nothing."
    ),
    data_dir: Path = typer.Option(
        Path("./data"),
        "--data-dir",
        envvar="IAMSIGN_DATA_DIR",
        help="Data folder (for the sandbox root named by the trust list).",
    ),
    jobs: int = typer.Option(0, "--jobs", min=0, help="Worker processes (default: one per CPU)."),
) -> None:
    """Verify every signed file of OUTDIR and count the indications; exit 0 only if all are TOTAL-PASSED."""
    from api.cli.batch_verify import TrustConfig, run_verify

    raise typer.Exit(run_verify(out, TrustConfig(trust_list, tuple(trust), data_dir, offline), jobs))


def _load_trust_file(loader, path: Path):
    from signing.errors import TrustListError

    try:
        return loader(path)
    except FileNotFoundError as exc:
        raise TrustListError(f"the --trust file {path} does not exist") from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
