"""Check the ``instasent`` connection form in a real browser (docs/airflow.md, "The connection form").

Opens the Airflow UI's "Add Connection" dialog in headless Chromium, picks the Instasent type and
checks the labels the provider declares: the relabelled standard fields, the hidden ones absent,
and (Airflow 3.2+) the extra fields from ``conn-fields``. Drives chromedriver over its WebDriver
HTTP API with ``requests`` (no Selenium). Needs Debian's ``chromium`` and ``chromium-driver``, an
``airflow api-server`` with ``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True``, and
``chromedriver --port=9515``::

    python scripts/check_connection_form.py http://127.0.0.1:8080 [--driver http://127.0.0.1:9515]
        [--screenshot form.png] [--no-extra-fields]   # the last one for Airflow < 3.2
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from typing import Any

import requests

STANDARD = ("Base URL", "API token", "Port (only if not in the Base URL)")
HIDDEN = ("Schema", "Login")
EXTRA = ("Project UID", "Datasource UID", "Timeout (s)", "Max retries", "TLS verification")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url")
    parser.add_argument("--driver", default="http://127.0.0.1:9515")
    parser.add_argument("--screenshot")
    parser.add_argument("--no-extra-fields", action="store_true", help="Airflow < 3.2: no conn-fields")
    args = parser.parse_args()
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2000"]}}}}
    session = requests.post(f"{args.driver}/session", json=caps, timeout=60).json()["value"]["sessionId"]
    base = f"{args.driver}/session/{session}"

    def wd(method: str, path: str, body: Any = None) -> Any:
        return requests.request(method, base + path, json=body, timeout=60).json()["value"]

    def find(xpath: str) -> str:
        return next(iter(wd("POST", "/element", {"using": "xpath", "value": xpath}).values()))

    def click(xpath: str) -> None:
        wd("POST", f"/element/{find(xpath)}/click", {})
        time.sleep(1)

    try:
        wd("POST", "/url", {"url": f"{args.base_url.rstrip('/')}/connections"})
        time.sleep(6)
        click("//button[normalize-space()='Add Connection']")
        kind = find("//div[@role='dialog']//input[not(@name)]")  # the connection-type combobox
        wd("POST", f"/element/{kind}/click", {})
        wd("POST", f"/element/{kind}/value", {"text": "Instasent"})
        time.sleep(1)
        wd("POST", f"/element/{kind}/value", {"text": "\ue007"})  # Enter
        time.sleep(3)
        standard = wd("POST", "/execute/sync", {"script": "return document.querySelector('[role=dialog]').innerText",
                                                "args": []})
        if "Base URL" not in standard:  # the standard fields' section starts closed on some versions
            click("//button[normalize-space()='Standard Fields']")
            standard = wd("POST", "/execute/sync",
                          {"script": "return document.querySelector('[role=dialog]').innerText", "args": []})
        if not args.no_extra_fields:
            click("//button[normalize-space()='Extra Fields']")
        text = wd("POST", "/execute/sync", {"script": "return document.querySelector('[role=dialog]').innerText",
                                            "args": []})
        if args.screenshot:
            with open(args.screenshot, "wb") as out:
                out.write(base64.b64decode(wd("GET", "/screenshot")))
    finally:
        wd("DELETE", "")
    if not isinstance(standard, str) or not isinstance(text, str):  # a WebDriver error: no dialog
        print(f"the Add Connection dialog did not open: {standard if not isinstance(standard, str) else text}",
              file=sys.stderr)
        return 1
    lines = {line.strip() for line in (standard + "\n" + text).splitlines()}
    problems = [f"missing field {label!r}" for label in STANDARD if label not in lines]
    problems += [f"hidden field {label!r} is shown" for label in HIDDEN if label in lines]
    if not args.no_extra_fields:
        problems += [f"missing extra field {label!r}" for label in EXTRA if label not in lines]
    for problem in problems:
        print(problem, file=sys.stderr)
    print("connection form OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
