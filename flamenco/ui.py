"""What every command of the CLI shares: the two consoles, the one-line failure and the table renderer."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Optional, Sequence, Union

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from flamenco.errors import fail as _exit_with
from flamenco_core.errors import EXIT_USAGE

# Lines print whole (soft_wrap): a path or a command broken at the window's edge no longer copies, and
# a pipe would carry the breaks into the file. Tables still fit the width (rich_table).
#: Tables and summaries (stdout).
console = Console(soft_wrap=True)
#: Warnings and progress that must not mix with a command's output (stderr).
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (default 2: a usage error). Plain text,
    one line: rich would wrap a long path mid-word and read [brackets] as markup."""
    _exit_with(message, code)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def _renderable(v: Any) -> bool:
    return hasattr(v, "__rich_console__") or hasattr(v, "__rich__")


def _numeric(column: Any) -> bool:
    """Right-justify a column of numbers: by dtype like the Markdown writer, and for object columns
    (rows given as dicts keep ints beside None) when every present cell is a number."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        return False
    if pd.api.types.is_numeric_dtype(column.dtype):
        return True
    present = [v for v in column if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(present) and all(_is_number(v) for v in present)


def rich_table(
    frame_or_rows: Any,
    *,
    title: Optional[Union[str, Text]] = None,
    floatfmt: Union[str, Mapping[str, str]] = ".3f",
    na: str = "n/a",
    justify: Optional[Mapping[str, str]] = None,
    columns: Optional[Sequence[str]] = None,
    headings: Optional[Mapping[str, str]] = None,
    index: bool = False,
    column_options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    **table_kwargs: Any,
) -> Table:
    """A ``rich.table.Table`` of a DataFrame or a list of row dicts, with the cells of the project's one
    table writer (:func:`flamenco_core.evaluation.tables.format_cell`, as in ``to_markdown``).

    Floats use ``floatfmt`` (one format, or a mapping column -> format; columns not named use ".3f"),
    None/NaN show ``na``, lists are joined with " + ". Cell, heading and title text is escaped, so
    "[bold]" or a path with brackets prints as written; a cell that is already a rich renderable (e.g.
    a styled ``Text``) is kept as it is. Numeric columns are right-justified, others left; ``justify``
    overrides per column. ``columns`` fixes the order (and the headings of an empty list of rows),
    ``headings`` maps column keys to the headings shown, ``index`` adds the frame's index as the first
    column, ``column_options`` passes extra ``add_column`` arguments per column (``min_width``,
    ``overflow``...); other keyword arguments go to ``Table``.

    Nothing is cut with "…" when the table is wider than the console: a number keeps its width (it is
    never shrunk) and texts and headings wrap inside their cell (``overflow="fold"``), unless
    ``column_options`` says otherwise. A table whose numbers alone are wider than the console needs
    shorter headings or fewer columns (the caller's choice).
    """
    import pandas as pd

    from flamenco_core.evaluation.tables import format_cell

    if isinstance(frame_or_rows, pd.DataFrame):
        df = frame_or_rows if columns is None else frame_or_rows[list(columns)]
    else:
        # object dtype: an int column with a None in it stays ints, not floats ("3", not "3.000")
        df = pd.DataFrame(list(frame_or_rows), columns=columns, dtype=object)
    if index:
        df = df.reset_index()
    headings, justify, options = headings or {}, justify or {}, column_options or {}
    fmts = {str(c): (floatfmt if isinstance(floatfmt, str) else floatfmt.get(str(c), ".3f")) for c in df.columns}
    table = Table(title=escape(title) if isinstance(title, str) else title, **table_kwargs)
    keys = [str(c) for c in df.columns]
    body = [[v if _renderable(v) else escape(format_cell(v, fmts[k], na)) for k, v in zip(keys, row)]
            for row in df.itertuples(index=False, name=None)]
    for j, c in enumerate(df.columns):
        key = str(c)
        numeric = _numeric(df[c])
        side = justify.get(key, "right" if numeric else "left")
        if numeric:
            widest = max((len(r[j]) for r in body if isinstance(r[j], str)), default=1)
            # a number keeps its width; its heading wraps (at spaces, else folded)
            defaults = {"min_width": widest, "overflow": "fold"}
        else:
            defaults = {"overflow": "fold"}
        table.add_column(escape(headings.get(key, key)), justify=side, **{**defaults, **options.get(key, {})})
    for cells in body:
        table.add_row(*cells)
    return table
