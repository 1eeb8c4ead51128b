"""Where the example DAGs find their files by default.

Every path is also a DAG ``Param``, so a run can point elsewhere (``airflow dags test DAG -c
'{"orders_path": "..."}'`` or the trigger form). ``INSTASENT_EXAMPLES_DIR`` moves the default
root (the README's demo sets it to its work folder).
"""

from __future__ import annotations

import os

DATA_DIR = os.environ.get("INSTASENT_EXAMPLES_DIR", "/tmp/instasent-examples")
