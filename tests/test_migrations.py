"""The schema exists only through the Alembic revisions, and they agree with the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import memchat.storage.models  # noqa: F401
from memchat import Memory, StorageError
from memchat.storage import database


def _url(tmp_path):
    return f"sqlite:///{tmp_path / 'schema.db'}"


def test_first_use_brings_an_empty_database_to_head(tmp_path):
    with Memory(str(tmp_path / "fresh.db")) as memory:
        memory.new_thread(title="x")
        revision, head = memory.schema_revision()
    assert revision == head is not None


def test_upgrade_downgrade_upgrade(tmp_path):
    engine = database.make_engine(_url(tmp_path))
    database.upgrade(engine)
    assert {"threads", "messages"} <= set(inspect(engine).get_table_names())
    database.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    database.upgrade(engine)
    assert database.current_revision(engine) == database.head_revision()
    engine.dispose()


def test_models_and_migrations_agree(tmp_path):
    engine = database.make_engine(_url(tmp_path))
    database.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
    engine.dispose()


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path):
    engine = database.make_engine(_url(tmp_path))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    engine.dispose()


def test_a_database_from_a_newer_memchat_is_refused_untouched(tmp_path):
    engine = database.make_engine(_url(tmp_path))
    database.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfuture'"))
    with pytest.raises(StorageError, match="newer memchat"):
        database.upgrade(engine)
    assert database.current_revision(engine) == "f00dfuture"
    engine.dispose()


def test_the_migration_scripts_ship_with_the_package():
    location = database.migrations_dir()
    assert (location / "env.py").is_file()
    assert list((location / "versions").glob("*.py"))
