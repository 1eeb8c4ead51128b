"""The client must stay light: no Airflow import from the package root or the client."""

from __future__ import annotations

import subprocess
import sys


def test_client_import_pulls_no_airflow_module():
    code = (
        "import sys\n"
        "from airflow_provider_instasent import InstasentClient\n"
        "import airflow_provider_instasent.client\n"
        "import airflow_provider_instasent.dataframe\n"
        "import airflow_provider_instasent.sync\n"
        "bad = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
