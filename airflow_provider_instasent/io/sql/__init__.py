"""SQL tables for every engine: identifiers, dialects, the staging + swap writer, the reader,
and the state-database session (sync state, export watermarks).

No Airflow import and no connection ids: callers pass a common-sql ``DbApiHook``, a DB-API
connection or a SQLAlchemy connection/engine (``database``).
"""

from .database import Database, database, detect_dialect
from .dialects import DUCKDB_ROW_GROUP, Dialect, dialect_named
from .identifiers import TableName, check_identifier, quote_identifier, source_sql
from .reader import QueryReader, read_query, rows_to_batch
from .session import DatabaseLockedError, Session, open_database
from .writer import WRITE_DISPOSITIONS, MergeKeyError, SqlWriter, SqlWriteResult, WriteDisposition, write_sql

__all__ = [
    "DUCKDB_ROW_GROUP",
    "WRITE_DISPOSITIONS",
    "Database",
    "DatabaseLockedError",
    "Dialect",
    "MergeKeyError",
    "QueryReader",
    "Session",
    "SqlWriteResult",
    "SqlWriter",
    "TableName",
    "WriteDisposition",
    "check_identifier",
    "database",
    "detect_dialect",
    "dialect_named",
    "open_database",
    "quote_identifier",
    "read_query",
    "rows_to_batch",
    "source_sql",
    "write_sql",
]
