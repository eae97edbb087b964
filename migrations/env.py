"""Alembic environment for memchat.

memchat passes its own connection in `config.attributes["connection"]` when it migrates a
database on first use; the `alembic` command line uses `sqlalchemy.url` or MEMCHAT_DB.
"""

from alembic import context
from sqlmodel import SQLModel

import memchat.storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from memchat.config import database_url
from memchat.storage.database import include_name, make_engine, migration_connection

config = context.config
target_metadata = SQLModel.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or database_url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
    with migration_connection(engine) as connection:
        _configure_and_run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
