"""The CLI's rich tables and the Markdown writer show the same cells (issue 12: one table renderer)."""

import io

import numpy as np
import pandas as pd
from rich.console import Console
from rich.text import Text

from flamenco.ui import rich_table
from flamenco_core.evaluation.tables import format_cell, to_markdown


def cells(table) -> list[list[str]]:
    """The cell text of a rich table, row by row (markup escapes resolved, as a console shows them)."""
    console = Console(file=io.StringIO(), width=200)
    columns = [[console.render_str(c).plain if isinstance(c, str) else c.plain for c in col._cells] for col in table.columns]
    return [list(r) for r in zip(*columns)]


def markdown_cells(md: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in md.strip().splitlines()[2:]]
    return [[c.strip() for c in r] for r in rows]


def render(table) -> str:
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(table)
    return console.export_text()


FRAME = pd.DataFrame({
    "score": [0.91234, np.nan, 1.0],
    "count": [3, 0, 12],
    "name": ["plain", None, "[bold]x"],
    "flag": [True, False, True],
    "lfs": [("a", "b"), (), ("c",)],
})


def test_cells_are_the_markdown_cells():
    for floatfmt, na in ((".3f", "n/a"), (".2f", "-")):
        md = markdown_cells(to_markdown(FRAME, floatfmt, index=False, headings=None, na=na, pad=False))
        assert cells(rich_table(FRAME, floatfmt=floatfmt, na=na)) == md
    assert cells(rich_table(FRAME))[1] == ["n/a", "0", "n/a", "False", "n/a"]
    assert cells(rich_table(FRAME))[0][:2] == ["0.912", "3"]


def test_rows_as_dicts_keep_ints_beside_none():
    rows = [{"a": 1, "b": None, "c": 0.5}, {"a": None, "b": "x", "c": float("nan")}]
    assert cells(rich_table(rows)) == [["1", "n/a", "0.500"], ["n/a", "x", "n/a"]]
    assert [format_cell(v, ".3f", "n/a") for v in (1, None, 0.5)] == ["1", "n/a", "0.500"]


def test_markup_prints_literally():
    table = rich_table([{"path": "out/[run]/x", "tag": "[bold]red[/bold]"}], title="[title]", headings={"tag": "[h]"})
    text = render(table)
    assert "out/[run]/x" in text and "[bold]red[/bold]" in text and "[title]" in text and "[h]" in text
    styled = rich_table([{"m": Text("FLAMENCO", style="bold")}])
    assert styled.columns[0]._cells[0].style == "bold"  # a renderable is kept, not escaped


def test_numbers_right_text_left():
    table = rich_table(FRAME)
    assert [c.justify for c in table.columns] == ["right", "right", "left", "left", "left"]
    rows = rich_table([{"n": 1, "s": "a"}, {"n": None, "s": "b"}], justify={"s": "right"})
    assert [c.justify for c in rows.columns] == ["right", "right"]
    line = [ln for ln in render(rich_table(pd.DataFrame({"v": [1.5, 100.25]}))).splitlines() if "1.500" in ln][0]
    assert "   1.500" in line  # padded on the left: right-justified


def test_empty_rows_keep_their_headings():
    text = render(rich_table([], columns=("kept", "kept_pack"), headings={"kept_pack": "from pack"}))
    assert "kept" in text and "from pack" in text


def test_analysis_table_renders_class_names_and_lf_names():
    from flamenco_core.labeling.analysis import display_frame, lf_summary

    L = np.array([[0, 1, -1, 1], [1, 1, 0, -1], [-1, 0, 1, 1]])
    Y = np.array([0, 1, 1, 0])
    df = lf_summary(L.T, ["a", "b|pipe", "[c]"], Y, ["benign", "attack"])
    text = render(rich_table(display_frame(df, ".3f"), title="LFs", index=True, na="nan"))
    assert "Emp. Acc." in text and "attack" in text and "b|pipe" in text and "[c]" in text


def test_nothing_is_cut_in_a_narrow_console():
    """A table wider than the console keeps every number whole and wraps long names inside their cell
    rather than cutting them with an ellipsis; plain lines print whole (soft wrap)."""
    from flamenco import ui

    rows = [{"LF": "a_labeling_function_name_that_is_long_" + str(i), "Coverage": 0.123456 * i, "Overlaps": 12345.678,
             "Conflicts": 0.5, "unlabeled macro, all rows": 0.25, "F1": 0.75} for i in range(3)]
    out = io.StringIO()
    narrow = Console(file=out, width=70)
    narrow.print(rich_table(rows))
    text = out.getvalue()
    assert "…" not in text, text
    assert max(map(len, text.splitlines())) <= 70
    assert "12345.678" in text and "0.247" in text and "0.750 │" in text  # the last column whole
    assert "".join(ln.split("│")[1].strip() for ln in text.splitlines() if ln.startswith("│")).count("long_") == 3
    path = "/a/" + "very_long_folder/" * 8 + "report.json"
    assert ui.console.soft_wrap and ui.err.soft_wrap
    out = io.StringIO()
    Console(file=out, width=60, soft_wrap=True).print(Text(f"wrote {path}"))
    assert out.getvalue().strip() == f"wrote {path}"
