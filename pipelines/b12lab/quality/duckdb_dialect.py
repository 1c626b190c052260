"""The SQLAlchemy dialect through which GX reads validation's scratch DuckDB database: `duckdb+readonly://`,
duckdb_engine's dialect with two adaptations that GX needs.

Results that survive the close of their connection. duckdb_engine's (`duckdb://`) hands out the connection
itself as every cursor, so a statement that runs on the connection replaces the result of the one before.
GX's SQL execution engine closes its connection before it fetches a query's rows
(`execute_query(...).fetchall()`), and closing an SQLAlchemy connection rolls back the transaction it began:
with duckdb_engine as it is, every metric query of GX comes back empty and every expectation fails with
"list index out of range".

Validation only reads (the database holds views of the night's Parquet files and is opened read-only), so
nothing needs a transaction: this dialect lets DuckDB run each statement on its own, and begins, commits and
rolls back nothing. The result of a query is then there to fetch until the next query runs.
"""
from __future__ import annotations

from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy.dialects import registry

SCHEME = "duckdb+readonly"
# SQLAlchemy's registry names a dialect "<database>.<driver>", the scheme's "+" a ".".
_REGISTRY_NAME = "duckdb.readonly"


class ReadOnlyDuckDBDialect(DuckDBDialect):
    driver = "readonly"
    supports_statement_cache = False

    def do_begin(self, dbapi_connection) -> None:
        pass

    def do_commit(self, dbapi_connection) -> None:
        pass

    def do_rollback(self, dbapi_connection) -> None:
        pass


# Regular expressions and LIKE patterns. GX writes their SQL only for a dialect whose `.dialect` (as a dialect
# module has it) is one it knows; without it, GX refuses them for DuckDB ("Regex is not supported for dialect
# duckdb"). duckdb_engine's dialect is PostgreSQL's, and DuckDB runs PostgreSQL's `~`, `!~` and LIKE with their
# meaning (a regex matches anywhere in the value unless anchored; its syntax is RE2's, so no backreferences or
# lookarounds): naming the class itself makes GX write that SQL.
ReadOnlyDuckDBDialect.dialect = ReadOnlyDuckDBDialect


def register() -> None:
    """Make `duckdb+readonly://` known to SQLAlchemy's create_engine (GX creates its engines from a URL)."""
    registry.register(_REGISTRY_NAME, __name__, ReadOnlyDuckDBDialect.__name__)
