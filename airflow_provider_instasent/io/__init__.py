"""The shared I/O layer: files, SQL tables and shards, for every engine and for the sharding.

Layers, each with one job (docs/architecture.md)::

    client/   HTTP to Instasent                        (no Airflow)
    io/       files, SQL tables, shard plans           (no Airflow, no connection ids)
    ingest/, export/   the engines                      (no Airflow)
    hooks/, operators/ the Airflow layer: the only place a ``conn_id`` is resolved

Everything here takes *ready objects*: a local path, a URL string, or an fsspec path object
such as Airflow's ``ObjectStoragePath`` (built by an operator from its connection); a
common-sql ``DbApiHook``, a DB-API connection or a SQLAlchemy connection/engine; a stream of
Arrow record batches. Modules:

* ``paths``: one way to open a path, whatever it is (pyarrow filesystems);
* ``parquet``: Parquet discovery (``pyarrow.dataset``), reading, the atomic writer;
* ``sql``: identifiers, per-database dialects, the staging + swap writer, the streaming
  reader;
* ``shards``: Parquet row-group shards and SQL key-range shards for mapped tasks.
"""
