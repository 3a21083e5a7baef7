"""Small HTML building blocks for the report: escaped tables, images as data URIs, the page frame."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["image_tag", "page", "table"]

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1150px;color:#222;
padding:0 1em}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{margin-top:2em;color:#335}h3{color:#446}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left}
th{background:#eef;position:sticky;top:0}
table.sortable th{cursor:pointer}table.sortable th:after{content:" \\2195";color:#99a}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.bad{background:#fdd}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
pre{background:#f6f6fa;padding:.6em;overflow-x:auto;font-size:.85em}
.note{color:#666;font-size:.9em}
nav a{margin-right:1em}
"""

SCRIPT = """
(function () {
  function key(cell) {
    var text = cell.getAttribute("data-v") || cell.textContent;
    var number = parseFloat(text);
    return isNaN(number) ? text.toLowerCase() : number;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, index) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("data-order") !== "asc";
        th.setAttribute("data-order", ascending ? "asc" : "desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[index]), y = key(b.cells[index]);
          var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""


def cell(value: Any) -> str:
    """One ``<td>``: numbers right-aligned with four decimals (NaN shown as a dash)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"<td>{html.escape(str(value))}</td>"
    if isinstance(value, float) and math.isnan(value):
        return '<td class="num" data-v="NaN">&ndash;</td>'
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    else:
        text = str(value)
    return f'<td class="num" data-v="{value!r}">{text}</td>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, sortable: bool = False, css_id: str = "") -> str:
    """An HTML table; ``sortable`` lets a click on a header sort the rows by that column."""
    attributes = (' class="sortable"' if sortable else "") + (f' id="{html.escape(css_id)}"' if css_id else "")
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` whose source is the PNG itself (a base64 data URI), so the page needs no other file."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: str) -> str:
    """The whole HTML document with inline style and script (no network access needed)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}<script>{SCRIPT}</script></body></html>\n"
    )
