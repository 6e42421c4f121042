"""Small HTML builders for the report pages: every value from data or config is escaped here, links and
image sources are relative to the page's folder and URL-quoted, and the CSS is inline, so a page is
one file that opens from disk (``file://``), from a copied folder or from an MLflow artifact view."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence
from urllib.parse import quote, unquote

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#23314d;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9d3e6}main{padding:8px 28px 40px;max-width:1400px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:10px 18px 16px;margin:16px 0}
h2{font-size:16px;margin:6px 0 10px;color:#23314d}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #dde2ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfc}dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:4px 0}
dt{color:#5a6478}dd{margin:0;word-break:break-all}code{font-size:12px;background:#eef1f6;padding:1px 4px;border-radius:3px}
.grid{display:flex;flex-wrap:wrap;gap:14px}figure{margin:0;max-width:100%}.grid figure{flex:0 1 620px}
figure img{max-width:640px;width:100%;border:1px solid #dde2ea;background:#fff}
figcaption{font-size:12px;color:#5a6478;max-width:640px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;margin:2px 4px 2px 0;background:#eef1f6}
.ok{background:#d8f0dc}.partial,.fallback{background:#fcefc7}.failed{background:#f8d4d4}.skipped{background:#e4e4e4}
.legend{font-size:12px;color:#3a4458}details{margin:4px 0}summary{cursor:pointer;font-weight:600}
ul.files{columns:2;font-size:13px}.note{color:#5a6478;font-size:12px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:0 16px}
.cards figure img{max-width:100%}
"""


def esc(value: Any) -> str:
    """``value`` as HTML text: escaped, quotes included (safe inside attributes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any) -> str:
    """A table cell's text: floats with three decimals, undefined (``None``, NaN) as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "n/a"
    return str(value)


def rel(path: Any, folder: Path) -> str:
    """``path`` relative to ``folder`` as a URL (POSIX separators, percent-quoted); a relative ``path``
    is taken as relative to ``folder`` already."""
    p = Path(str(path))
    if p.is_absolute():
        p = Path(os.path.relpath(p, folder))
    return quote(p.as_posix())


def link(path: Any, folder: Path, text: Optional[str] = None) -> str:
    """An ``<a>`` to ``path`` (relative to ``folder``), showing ``text`` or the relative path."""
    r = rel(path, folder)
    return f'<a href="{esc(r)}">{esc(text if text is not None else unquote(r))}</a>'


def badge(text: Any, kind: Optional[str] = None) -> str:
    """A small label (outcome counts); ``kind`` (ok, partial, fallback, skipped, failed) colours it."""
    return f'<span class="badge {esc(kind or "")}">{esc(text)}</span>'


#: Outcome words in display order (pairs, combinations, dumps, models); each has its badge colour.
OUTCOMES = ("ok", "partial", "fallback", "skipped", "failed")


def outcome_badges(counts: Mapping[str, Any]) -> str:
    """A badge per ``{outcome: count}``, coloured where the outcome is one of :data:`OUTCOMES`."""
    return "".join(badge(f"{k} {v}", k if k in OUTCOMES else None) for k, v in counts.items())


def artifact_path(path: Any, folder: Path) -> Optional[Path]:
    """A file a report names (absolute, or relative to ``folder``) when it exists; else ``None``."""
    if not path:
        return None
    p = Path(str(path))
    p = p if p.is_absolute() else folder / p
    return p if p.is_file() else None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and v != v)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[tuple[str, str]], *,
          links: Optional[Mapping[str, Path]] = None) -> str:
    """An HTML table of ``rows`` with ``columns`` as ``(key, heading)``; numbers right-aligned. ``links``
    maps a key to the folder its values are paths relative to (the cell becomes a link)."""
    rows = list(rows)
    head = "".join(f"<th>{esc(h)}</th>" for _, h in columns)
    # an empty cell of a text column is blank; of a numeric column, "n/a" (an undefined score)
    numeric = {key for key, _ in columns if any(_is_number(r.get(key)) for r in rows)}
    body = []
    for r in rows:
        cells = []
        for key, _ in columns:
            v = r.get(key)
            num = _is_number(v)
            if not num and key not in numeric and (v is None or (isinstance(v, float) and v != v)):
                v = ""
            text = link(v, links[key]) if links and key in links and v else esc(fmt(v))
            cells.append(f'<td class="num">{text}</td>' if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def frame_table(df: Any, index_heading: Optional[str] = None) -> str:
    """A pandas DataFrame as an HTML table (its index as the first column when named or ``index_heading``)."""
    frame = df.reset_index() if (index_heading or df.index.name) else df
    if index_heading and frame.columns[0] in ("index", df.index.name):
        frame = frame.rename(columns={frame.columns[0]: index_heading})
    rows = frame.to_dict("records")
    return table(rows, [(c, str(c)) for c in frame.columns])


def definitions(items: Iterable[tuple[str, Any]]) -> str:
    """A definition list of ``(term, value)``; ``value`` is text (escaped) unless it is :class:`Raw`."""
    out = []
    for k, v in items:
        if v is None or v == "":
            continue
        out.append(f"<dt>{esc(k)}</dt><dd>{v.html if isinstance(v, Raw) else esc(fmt(v))}</dd>")
    return f"<dl>{''.join(out)}</dl>"


class Raw:
    """Markup built by this module (already escaped), passed where text would be escaped."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def figure(path: Any, folder: Path, caption: str) -> str:
    """An image (relative to ``folder``) with its caption; the image links to itself at full size."""
    r = esc(rel(path, folder))
    return (f'<figure><a href="{r}"><img src="{r}" alt="{esc(caption)}"></a>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def section(title: str, body: str, anchor: Optional[str] = None) -> str:
    """A titled section (``anchor``: its id, for the page's links)."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{ident}><h2>{esc(title)}</h2>{body}</section>"


def page(title: str, subtitle: str, sections: Iterable[str]) -> str:
    """A whole HTML document: inline CSS, no script, no external resource."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>"
            + "".join(sections) + "</main></body></html>\n")
