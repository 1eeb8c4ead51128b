"""The client, the dataframe loader and the emulator stay light: no Airflow import at import
time, so they install and run without the ``airflow`` extra (docs/adr/0008-packaging-airflow-extra.md).
The Airflow parts say which extra is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata

import pytest

from airflow_provider_instasent import get_provider_info as gpi

#: Everything an analyst imports; none may pull Airflow or the common-sql provider.
AIRFLOW_FREE = (
    "airflow_provider_instasent.client",
    "airflow_provider_instasent.dataframe",
    "airflow_provider_instasent.ingest",
    "airflow_provider_instasent.export",
    "airflow_provider_instasent.io",
    "airflow_provider_instasent.io.sql",
    "airflow_provider_instasent.sync",
    "airflow_provider_instasent.sms",
    "airflow_provider_instasent.emulator",
    "airflow_provider_instasent.get_provider_info",
)

HAS_AIRFLOW = importlib.util.find_spec("airflow") is not None


def test_client_import_pulls_no_airflow_module():
    code = (
        "import sys\n"
        "from airflow_provider_instasent import InstasentClient\n"
        + "".join(f"import {m}\n" for m in AIRFLOW_FREE)
        + "from airflow_provider_instasent.dataframe import write_contacts, write_events, read_audience\n"
        "from airflow_provider_instasent.emulator import Emulator\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_missing_airflow_names_the_extra(monkeypatch):
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(gpi.metadata, "version", not_installed)
    with pytest.raises(ImportError, match=r"airflow-provider-instasent\[airflow\]") as info:
        gpi.get_provider_info()
    assert "dataframe loader" in str(info.value)


def test_an_unsupported_airflow_is_refused():
    with pytest.raises(ImportError, match=r"needs Apache Airflow >=3\.0\.0; this environment has 2\.10\.5"):
        gpi.require_airflow("2.10.5")
    assert gpi.require_airflow("3.0.0") == "3.0.0"
    assert gpi.require_airflow("3.1.0rc1") == "3.1.0rc1"


@pytest.mark.skipif(HAS_AIRFLOW, reason="Airflow is installed (this checks the analyst install)")
def test_without_airflow_the_hooks_and_operators_say_which_extra():
    for module in ("airflow_provider_instasent.hooks.instasent", "airflow_provider_instasent.operators.ingest"):
        code = f"import {module}"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode != 0
        assert 'pip install "airflow-provider-instasent[airflow]"' in out.stderr, out.stderr
