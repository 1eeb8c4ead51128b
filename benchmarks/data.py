"""Generated benchmark data (``airflow_provider_instasent.samples``), cached under
``benchmarks/.data`` (gitignored). Deterministic: the same sizes give the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import DATA_DIR

#: Bump when the generated data changes, so that stale cached files are not reused.
VERSION = "v1"
CHUNK_ROWS = 250_000


def user_ids(n: int, prefix: str = "bench") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def orders_table(n: int, users: int = 10_000, seed: int = 13) -> pa.Table:
    """``n`` ``ecommerce_order_create`` rows (0.4% invalid on purpose) of ``users`` users."""
    from airflow_provider_instasent import samples

    return samples.orders(user_ids(users), n, seed=seed)


def orders_parquet(n: int, users: int = 10_000, prefix: str = "bench") -> Path:
    """A Parquet file of ``n`` order events (row groups of 100k rows), generated once.

    Written chunk by chunk, so generating 4M rows does not hold them all in memory.
    """
    from airflow_provider_instasent import samples

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"orders-{VERSION}-{prefix}-{users}u-{n}.parquet"
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ids = user_ids(users, prefix)
    writer: pq.ParquetWriter | None = None
    try:
        done = 0
        chunk = 0
        while done < n:
            rows = min(CHUNK_ROWS, n - done)
            table = samples.orders(ids, rows, seed=1000 + chunk)
            if writer is None:
                writer = pq.ParquetWriter(str(tmp), table.schema, compression="zstd")
            writer.write_table(table, row_group_size=100_000)
            done += rows
            chunk += 1
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return path


def audience_contacts(n: int, seed: int = 7) -> pa.Table:
    """``n`` CRM-like contacts (``samples.crm_contacts``: names, emails, phones in several
    formats, plan, birthday; ~0.5% invalid on purpose), with ``loyalty_points`` = row number so
    that a filter ``loyalty_points < k`` selects exactly the first ``k`` rows' contacts."""
    from airflow_provider_instasent import samples

    table = samples.crm_contacts(n, seed)
    idx = table.schema.get_field_index("loyalty_points")
    return table.set_column(idx, "loyalty_points", pa.array(np.arange(n, dtype="float64")))
