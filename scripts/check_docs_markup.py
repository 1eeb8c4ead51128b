"""Fail when Sphinx roles (``:class:`X```, ``:func:`f```...) reach the built docs, where
MkDocs shows them literally. Usage: ``python scripts/check_docs_markup.py SITE_DIR``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|ref):`")


def main(site: str) -> int:
    bad = [(str(p), m.group(0)) for p in Path(site).rglob("*.html") for m in ROLE.finditer(p.read_text("utf-8"))]
    for path, role in bad[:20]:
        print(f"{path}: Sphinx markup {role!r} in the rendered page", file=sys.stderr)
    if bad:
        print(f"{len(bad)} Sphinx role(s) in the built docs: write `Name` (Markdown) in docstrings", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".work/site"))
