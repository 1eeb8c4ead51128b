"""The command line (python -m / instasent-emulator), config files, subprocess mode, bench."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from airflow_provider_instasent.emulator import bench, running

MODULE = [sys.executable, "-m", "airflow_provider_instasent.emulator"]
EXTRA_TOKEN_CONFIG = {
    "extends": "default",
    "tokens": [{"token": "file-token", "projects": ["demo"], "scopes": ["PROJECT_AUDIENCE_READ"]}],
}


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*MODULE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_listening_line_and_exits_0_on_signal(sig: int) -> None:
    proc, line = start("--port", "0", "--seed", "3")
    try:
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.removeprefix("listening on ")
        session = requests.Session()  # keep an idle keep-alive connection open during shutdown
        r = session.get(url + "/v1/", headers={"Authorization": "Bearer demo-admin-token"}, timeout=10)
        assert r.status_code == 200
    finally:
        code = stop(proc, sig)
    assert code == 0


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_cli_config_file_json_and_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fixture{suffix}"
    path.write_text(
        json.dumps(EXTRA_TOKEN_CONFIG) if suffix == ".json" else yaml.safe_dump(EXTRA_TOKEN_CONFIG)
    )
    proc, line = start("--port", "0", "--config", str(path), "--rate-limit", "600", "--latency-ms", "1")
    try:
        url = line.removeprefix("listening on ")
        r = requests.get(
            url + "/v1/project/demo/audience/user/x",
            headers={"Authorization": "Bearer file-token"},
            timeout=10,
        )
        assert r.status_code == 404  # authorised (not 401/403), the contact just does not exist
        assert r.headers["X-RateLimit-Limit"] == "600"
    finally:
        assert stop(proc) == 0


def test_cli_rejects_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("projects: []\n")
    proc = subprocess.run(
        [*MODULE, "--port", "0", "--config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "projects" in proc.stderr


def test_running_in_a_subprocess_with_a_mapping_config() -> None:
    with running(EXTRA_TOKEN_CONFIG, subprocess=True, fault_rate=1.0, fault_kinds=["503"], seed=1) as url:
        assert url.startswith("http://127.0.0.1:")
        r = requests.get(url + "/v1/", headers={"Authorization": "Bearer file-token"}, timeout=10)
        assert r.status_code == 503
        assert requests.get(url + "/_emulator/state", timeout=10).json()["events"] == 0


def test_running_in_a_thread_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "fixture.yml"
    path.write_text(yaml.safe_dump(EXTRA_TOKEN_CONFIG))
    with running(path) as url:
        r = requests.get(url + "/v1/project/demo", headers={"Authorization": "Bearer file-token"}, timeout=10)
        assert r.status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_emulator/state", timeout=2)


def test_bench_helper_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--in-process", "--seconds", "0.3", "--clients", "2", "--users", "100"]) == 0
    out = capsys.readouterr().out
    assert "requests/s" in out and "event batches" in out


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "instasent-emulator"
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    proc = subprocess.Popen([str(script), "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:")
    assert stop(proc) == 0
