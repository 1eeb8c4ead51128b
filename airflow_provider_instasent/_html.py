"""HTML for reports in Jupyter (``_repr_html_``): a counts table, then the first rows of a frame.

Plain HTML with escaped values, no scripts or styles beyond a few inline attributes, so it
renders the same in JupyterLab, VS Code and a static ``nbconvert`` export.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

#: How many rejects/failures rows a report shows inline.
HTML_ROWS = 10


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape("" if value is None else str(value))


def report_html(title: str, counts: Iterable[tuple[str, Any]], *, frame: Any = None, frame_title: str = "",
                total: int | None = None, rows: int = HTML_ROWS) -> str:
    """``title``; a two-column table of ``counts`` (rows whose value is ``None`` are left out);
    then, when ``frame`` (a pandas DataFrame) has rows, its first ``rows`` under ``frame_title``."""
    parts = [f"<div><strong>{html.escape(title)}</strong>",
             '<table style="text-align:right"><tbody>']
    for name, value in counts:
        if value is None:
            continue
        parts.append(f'<tr><th style="text-align:left">{html.escape(name)}</th><td>{_cell(value)}</td></tr>')
    parts.append("</tbody></table>")
    if frame is not None and len(frame):
        shown = min(rows, len(frame))
        of = total if total is not None else len(frame)
        parts.append(f"<p>{html.escape(frame_title)}: the first {shown} of {of:,}</p>")
        parts.append(frame.head(rows).to_html(index=False, border=0, escape=True))
    parts.append("</div>")
    return "\n".join(parts)
