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

    from .app import create_app
    from .settings import Settings

    settings = Settings(host=host, port=port, data_dir=data_dir)
    application = create_app(settings)
    typer.echo(f"iamsign listening on {settings.base_url}  (data in {data_dir.resolve()})")
    typer.echo(f"  API docs:        {settings.base_url}/docs")
    if settings.sandbox_enabled:
        typer.echo(f"  sandbox PKI:     {settings.base_url}/sandbox/pki/root.pem")
    uvicorn.run(application, host=host, port=port, log_level="info")


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

    from .db import make_engine, migrate
    from .keys import create_api_key
    from .settings import Settings

    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    with Session(engine) as session:
        secret, _ = create_api_key(session, name, key_name)
    typer.echo(secret)
    typer.echo(f"(API key for {name!r}; shown once, store it now)", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
