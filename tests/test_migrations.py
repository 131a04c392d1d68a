"""Schema changes go through alembic, and an upgrade keeps the data already there (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from api.store.db import alembic_config, migrate

from .databases import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_from_the_first_revision_keeps_rows(tmp_path, backend):
    with database_url(backend, tmp_path) as url:
        command.upgrade(alembic_config(url), "0001")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO organisations (id, name, created_at) VALUES ('org_1', 'School', "
                    "CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO documents (id, organisation_id, sha256, size, filename, pages, "
                    "signature_count, created_at) VALUES ('doc_1', 'org_1', :sha, 10, 'a.pdf', 1, 0, "
                    "CURRENT_TIMESTAMP)"
                ),
                {"sha": "ab" * 32},
            )
        migrate(engine)  # what every start does
        with engine.connect() as conn:
            assert conn.execute(text("SELECT filename FROM documents WHERE id = 'doc_1'")).scalar() == "a.pdf"
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
            conn.execute(text("SELECT idempotency_key FROM batches")).all()  # the newest columns exist
        migrate(engine)  # and running it again changes nothing
        engine.dispose()


def _head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
