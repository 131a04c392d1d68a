"""The ``iamsign`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(no_args_is_help=True, help="iamsign: PDF signing with iAM Smart+ (and its sandbox).")


@app.callback()
def _root() -> None:
    """iamsign: PDF signing with iAM Smart+ (and its sandbox)."""


def _settings(command: str, **overrides):
    """The settings from the environment and ``overrides``; exit 2 with one line per problem."""
    from pydantic import ValidationError

    from api.settings import Settings

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            where = "IAMSIGN_" + "_".join(str(p) for p in err["loc"][:1]).upper()
            typer.echo(f"iamsign {command}: {where}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    problems = settings.problems()
    for line in problems:
        typer.echo(f"iamsign {command}: {line}", err=True)
    if problems:
        typer.echo(
            f"iamsign {command}: {len(problems)} problem(s) in the {settings.environment} configuration; "
            "not starting (docs/deploy.md)",
            err=True,
        )
        raise typer.Exit(2)
    return settings


@app.command("check-config")
def check_config(
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
) -> None:
    """Check the IAMSIGN_* settings as `iamsign serve` would, without starting: exit 0 if runnable, 2 if not."""
    settings = _settings("check-config", data_dir=data_dir)
    mounted = "mounted at /sandbox and trusted" if settings.sandbox_mounted else "not mounted, not trusted"
    typer.echo(f"iamsign check-config: the {settings.environment} configuration is complete")
    typer.echo(f"  public URL:  {settings.base_url}")
    typer.echo(f"  sandbox:     {mounted}")
    typer.echo(
        f"  TSA:         {settings.tsa_url or ('the sandbox TSA' if settings.sandbox_mounted else 'none')}"
    )
    typer.echo(f"  default level: {settings.default_level}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("./data"), help="Folder for the database, documents and sandbox PKI."),
) -> None:
    """Run the service on its embedded defaults (SQLite, local files, the built-in sandbox)."""
    import uvicorn

    from api.app import create_app
    from api.edge.waking_server import WakingServer
    from api.telemetry import configure_logging

    settings = _settings("serve", host=host, port=port, data_dir=data_dir)
    configure_logging(settings.log_format)
    application = create_app(settings)
    for line in serve_banner(settings, data_dir):
        typer.echo(line)
    # Logging stays as configured above; the access lines (with request ids) come from api.telemetry.
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level="info",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    WakingServer(config, on_exit=application.state.context.status_changes.close).run()


def serve_banner(settings, data_dir: Path) -> list[str]:
    """What ``serve`` prints: this replica's own address first, then where clients reach the service."""
    own = f"http://{settings.host}:{settings.port}"
    lines = [f"iamsign listening on {own}  (data in {data_dir.resolve()})"]
    if settings.base_url != own:
        lines.append(f"  public URL:      {settings.base_url}  (IAMSIGN_PUBLIC_URL, shared by every replica)")
    base = settings.base_url
    lines.append(f"  API docs:        {base}/docs")
    if settings.metrics_enabled:
        lines.append(f"  metrics:         {own}/metrics  (Prometheus; this replica's)")
    if settings.sandbox_mounted:
        lines.append(f"  sandbox:         {base}/sandbox/  (simulated phones, users, root CA)")
        lines.append(f"  sandbox root CA: {base}/sandbox/pki/root.pem")
        lines.append(
            'Try it: create a key with `iamsign keys create "My School" --data-dir DATA`, then follow the'
        )
        lines.append(
            "        README's 'Try it by hand' (upload, signing request, approve on the sandbox phone)."
        )
    else:
        lines.append(f"  environment:     {settings.environment} (nothing of the sandbox mounted or trusted)")
    return lines


@app.command()
def worker(
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder (same as the replicas')."),
    workers: int = typer.Option(2, min=1, max=64, help="Worker threads."),
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port (/metrics)."
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address of the metrics port.")
    ] = "127.0.0.1",
) -> None:
    """Run background workers only (embedding, expiry sweep, webhooks); give it the replicas' IAMSIGN_* environment."""
    import signal
    import threading

    from api.context import ServiceContext
    from api.telemetry import configure_logging

    settings = _settings("worker", data_dir=data_dir)
    configure_logging(settings.log_format)
    ctx = ServiceContext(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ctx.queue.start_consumer(workers)
    where = settings.queue_url or f"SQLite queue in {(data_dir / 'queue.db').resolve()}"
    typer.echo(f"iamsign worker: {workers} thread(s) on {where}; Ctrl+C to stop")
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from api.telemetry.metrics import StateCollector, build_registry

        registry = build_registry(StateCollector(ctx.engine, ctx.queue.huey.pending_count))
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
        typer.echo(f"  metrics:         http://{metrics_host}:{metrics_port}/metrics")
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


def _key_store(data_dir: Path):
    """The settings and a migrated engine of the service's database."""
    from api.settings import Settings
    from api.store.db import make_engine, migrate

    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    return settings, engine


@keys_app.command("create")
def keys_create(
    name: str = typer.Argument(..., help="Organisation the key belongs to (created if new)."),
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
    key_name: str = typer.Option("default", help="A label for this key."),
    expires_in_days: int | None = typer.Option(
        None, "--expires-in-days", min=1, help="Refuse the key after this many days (default: no expiry)."
    ),
) -> None:
    """Create an API key and print it once (only its SHA-256 is stored)."""
    import datetime as dt

    from sqlmodel import Session

    from api.settings import reveal
    from api.store.keys import create_api_key
    from api.store.models import Organisation, utcnow
    from api.store.secrets import load_or_create_secret
    from api.worker.webhooks import organisation_webhook_secrets

    settings, engine = _key_store(data_dir)
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    with Session(engine) as session:
        secret, row = create_api_key(session, name, key_name, expires_at=expires)
        org = session.get(Organisation, row.organisation_id)
        assert org is not None  # created with the key
        webhook_secret = None
        if (
            settings.server_secret is not None or settings.environment == "sandbox"
        ):  # never a stray secret file
            server_secret = load_or_create_secret(settings.data_dir, "server", reveal(settings.server_secret))
            webhook_secret = organisation_webhook_secrets(server_secret, org)[0].decode()
        key_id = row.id
    typer.echo(secret)
    typer.echo(f"(API key {key_id} for {name!r}; shown once, store it now)", err=True)
    if expires:
        typer.echo(f"(it expires {expires.isoformat(timespec='seconds')})", err=True)
    if webhook_secret:
        typer.echo(f"(webhook secret of {name!r}: {webhook_secret})", err=True)
    else:
        typer.echo(
            "(webhook secret: GET /v1/webhook-secret with the key, or set IAMSIGN_SERVER_SECRET here)",
            err=True,
        )


@keys_app.command("list")
def keys_list(
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
    organisation: str | None = typer.Option(None, "--organisation", help="Only this organisation's keys."),
) -> None:
    """Every API key: id, organisation, label, prefix, created, expires, state (never the key itself)."""
    from sqlmodel import Session

    from api.store.keys import key_state, list_api_keys

    _settings_unused, engine = _key_store(data_dir)
    with Session(engine) as session:
        rows = list_api_keys(session, organisation)
    typer.echo("id\torganisation\tname\tprefix\tcreated\texpires\tstate")
    for key, org in rows:
        expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
        created = key.created_at.isoformat(timespec="seconds")
        typer.echo(f"{key.id}\t{org.name}\t{key.name}\t{key.prefix}\t{created}\t{expires}\t{key_state(key)}")


@keys_app.command("revoke")
def keys_revoke(
    key: str = typer.Argument(..., help="The key's id or prefix, as `iamsign keys list` shows them."),
    data_dir: Path = typer.Option(Path("./data"), help="The service's data folder."),
) -> None:
    """Revoke an API key: it is refused (401) from now on."""
    from sqlmodel import Session

    from api.store.keys import revoke_api_key

    _settings_unused, engine = _key_store(data_dir)
    with Session(engine) as session:
        row = revoke_api_key(session, key)
    if row is None:
        typer.echo(f"iamsign keys revoke: no single key has the id or prefix {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {row.id} ({row.prefix}...)")


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
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="IAMSIGN_DATA_DIR",
        help="Data folder (for the sandbox root named by the trust list); default: the first of ./data, "
        "~/.local/share/iamsign and the checkout's data folder that holds it.",
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

    def fail(code: str, message: str) -> NoReturn:
        typer.echo(f"iamsign verify: {message}", err=True)
        if as_json:
            typer.echo(json.dumps({"error": {"code": code, "message": message}}))
        raise typer.Exit(2)

    if lang not in ("en", "zh-Hant"):
        fail("invalid_option", f"--lang must be en or zh-Hant, not {lang!r}")
    moment = None
    if at is not None:
        try:
            moment = dt.datetime.fromisoformat(at)
        except ValueError:
            fail("invalid_option", f"--at {at!r} is not an ISO 8601 date or time")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
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
    level: str = typer.Option(
        "B-LTA",
        "--level",
        help="Requested level: B-B, B-T, B-LT or B-LTA. PAdES baseline at that level for an enrolled signer "
        "(POST /v1/signers); otherwise a PKCS#7 signature with the same timestamps and LTV data.",
    ),
    require_pades: bool = typer.Option(
        False,
        "--require-pades",
        help="Refuse to start unless every signature will be PAdES baseline (the signer must be enrolled).",
    ),
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
                require_pades=require_pades,
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
    data_dir: Path | None = typer.Option(
        None,
        "--data-dir",
        envvar="IAMSIGN_DATA_DIR",
        help="Data folder (for the sandbox root named by the trust list); default: the first of ./data, "
        "~/.local/share/iamsign and the checkout's data folder that holds it.",
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
