"""Alembic environment: runs on the connection that `app.db.migrate` hands over."""

from alembic import context

from app.db.models import Base
from app.db.search_schema import include_name

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations through app.db.migrate.upgrade_database (chatstack serve does).")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=include_name,  # the search index is not in the models
)
with context.begin_transaction():
    context.run_migrations()
