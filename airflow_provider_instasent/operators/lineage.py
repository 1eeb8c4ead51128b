"""OpenLineage facets of the ingest, sync and export operators (``get_openlineage_facets_on_complete``).

Imported only when the openlineage provider is installed (``airflow-provider-instasent[openlineage]``);
without it the operators return no lineage and nothing else changes. Dataset names follow the
OpenLineage naming rules (https://openlineage.io/docs/spec/naming):

* Instasent: namespace ``instasent://<project>``, name ``audience``, ``segment/<uid>``,
  ``datasource/<uid>/contacts|events`` or ``events`` (the same as the ``instasent`` asset URIs);
* a SQL table: what the connection's common-sql hook says (``postgres://host:port``,
  ``database.schema.table``), through the openlineage provider's own SQL parser; a SQL query
  source: the tables it reads;
* a file: namespace ``file`` (local) or ``scheme://bucket`` (object storage), name the path.

Schema facets come from the specs (the datasource's attribute or event parameter specs) and,
for an export, from the Arrow schema it wrote; output statistics carry the rows.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    InputDataset,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)
from airflow.providers.openlineage.extractors import OperatorLineage

from .assets import SCHEME


def instasent_namespace(project: str | None) -> str:
    return f"{SCHEME}://{project or 'unknown'}"


def spec_fields(specs: Any, kind: str, event_type: str | None) -> list[tuple[str, str]]:
    """``(name, data type)`` of the fields a push writes, from the datasource's specs."""
    if specs is None:
        return []
    if kind == "contacts":
        return [(name, spec.data_type) for name, spec in sorted(specs.writable_attributes().items())]
    if event_type and specs.has_event_type(event_type):
        params = specs.event_type(event_type).parameters
        return [(name, spec.data_type) for name, spec in params.items()]
    return []


def schema_facet(fields: list[tuple[str, str]]) -> dict[str, Any]:
    if not fields:
        return {}
    return {"schema": SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=name, type=str(type_)) for name, type_ in fields])}


def row_count(rows: Any) -> Any:
    return OutputStatisticsOutputDatasetFacet(rowCount=int(rows or 0))


def arrow_fields(schema: Any) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema] if schema is not None else []


def path_dataset(path: Any) -> tuple[str, str]:
    """``(namespace, name)`` of a file or object-storage path."""
    text = str(path)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme and parts.scheme != "file" and "://" in text:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    local = parts.path if parts.scheme == "file" else text
    return "file", os.path.abspath(local)


def sql_datasets(hook: Any, conn_id: str, sql: str) -> list[Dataset]:
    """The tables ``sql`` reads, named by the connection's OpenLineage database info; a database
    without it (DuckDB, SQLite) names them ``<conn type>://<conn id>`` + the table as written."""
    from airflow.providers.openlineage.sqlparser import SQLParser, get_openlineage_facets_with_sql

    found = get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=conn_id, database=None,
                                            use_connection=False)
    if found is not None:
        return list(found.inputs)
    meta = SQLParser(dialect="generic").parse(sql)
    namespace = f"{getattr(hook, 'conn_type', None) or 'sql'}://{conn_id}"
    return [InputDataset(namespace=namespace, name=table.qualified_name) for table in (meta.in_tables if meta else [])]


def sql_table(hook: Any, conn_id: str, table: str) -> tuple[str, str]:
    """``(namespace, name)`` of a table (named as ``sql_datasets`` names what a query reads)."""
    named = sql_datasets(hook, conn_id, f"SELECT * FROM {table}")
    if named:
        return named[0].namespace, named[0].name
    return f"{getattr(hook, 'conn_type', None) or 'sql'}://{conn_id}", table


def _source_inputs(op: Any) -> list[Dataset]:
    if getattr(op, "path", None) is not None:
        namespace, name = path_dataset(op.path)
        return [InputDataset(namespace=namespace, name=name)]
    if getattr(op, "sql", None) is not None and op.sql_conn_id:
        from .base import sql_hook

        return sql_datasets(op._lineage.get("sql_hook") or sql_hook(op.sql_conn_id), op.sql_conn_id, op.sql)
    return []


def _push_lineage(op: Any, result: dict[str, Any]) -> OperatorLineage:
    project, datasource = op._lineage.get("project"), op._lineage.get("datasource")
    fields = spec_fields(op._lineage.get("specs"), op.kind, getattr(op, "event_type", None))
    output = OutputDataset(
        namespace=instasent_namespace(project), name=f"datasource/{datasource}/{op.kind}",
        facets=schema_facet(fields),
        outputFacets={"outputStatistics": row_count(result.get("accepted"))},
    )
    return OperatorLineage(inputs=_source_inputs(op), outputs=[output])


def _export_lineage(op: Any, result: dict[str, Any]) -> OperatorLineage:
    project = op._lineage.get("project")
    name = {"audience": "audience", "segment": f"segment/{op.segment}", "events": "events"}[op.source]
    fields = arrow_fields(op._lineage.get("schema"))
    source = InputDataset(namespace=instasent_namespace(project), name=name, facets=schema_facet(fields))
    if hasattr(op, "table"):
        namespace, target = sql_table(op._lineage["sql_hook"], op.sql_conn_id, op.table)
    else:
        namespace, target = path_dataset(op.path)
    output = OutputDataset(
        namespace=namespace, name=target, facets=schema_facet(fields),
        outputFacets={"outputStatistics": row_count(result.get("rows"))},
    )
    return OperatorLineage(inputs=[source], outputs=[output])


def operator_lineage(op: Any) -> OperatorLineage | None:
    """The lineage of ``op``'s last successful run (None before one, or for other operators)."""
    result = op._lineage.get("result")
    if result is None:
        return None
    if op.operation in ("ingest", "sync"):
        return _push_lineage(op, result)
    if op.operation == "export":
        return _export_lineage(op, result)
    return None
