"""Alembic environment of the records database.

Run from code (:func:`inspection.records.db.upgrade`), which hands over its connection in
``config.attributes["connection"]``; ``alembic -x url=...`` style use works too, through
the ``sqlalchemy.url`` main option. No alembic.ini is needed.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from inspection.records.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    # Batch mode: SQLite cannot ALTER most things; batch recreates the table.
    context.configure(target_metadata=target_metadata, render_as_batch=True, **kwargs)


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
