"""``flamenco explain``: the path one data point takes through an interpretability tree, and its label.

A plain function with typer-annotated parameters, registered on the app by :mod:`flamenco.cli`. The tree
core (numpy, pandas) is imported inside the command so ``flamenco --help`` stays fast. Exit codes: 0 ok,
2 bad input (unreadable tree file, point not a JSON object of numbers).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import typer
from rich.text import Text

from flamenco.ui import console, err, fail, rich_table


POINT_HELP = 'the data point as a JSON object of feature values, e.g. \'{"src_port": 8888, "average_packet_size": 80}\''


def explain_cmd(
    tree: Path = typer.Option(..., "--tree", help="tree JSON written by Tree.to_json (a run's trees/ folder)"),
    point: str = typer.Option(..., "--point", help=POINT_HELP),
) -> None:
    """Print the tests a data point passes through in an interpretability tree, and the label it gets."""
    from flamenco_core.explain import Tree, condition_text

    try:
        t = Tree.from_json(tree)
    except ValueError as exc:
        fail(f"{tree}: {exc}")
    try:
        values = json.loads(point)
    except json.JSONDecodeError as exc:
        fail(f"--point is not valid JSON: {exc}")
    if not isinstance(values, dict):
        fail("--point must be a JSON object such as '{\"src_port\": 8888}'")
    try:
        path = t.path(values)
    except ValueError as exc:
        fail(f"--point: {exc}")

    # A misspelt feature would silently be "missing" and take the false branch: say so.
    read = t.features
    missing = [f for f in dict.fromkeys(s.feature for s in path.steps) if f not in values or values[f] is None]
    unused = [k for k in values if k not in read]
    for f in missing:
        hint = difflib.get_close_matches(f, unused, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        err.print(Text.assemble(("warning: ", "bold yellow"), f"the point has no value for {f!r}; its test is false{extra}"))

    rows = [{"#": k, "test": condition_text(t, t.nodes[s.node]), "value": None if s.value is None else float(s.value),
             "outcome": Text("true", style="green") if s.outcome else Text("false", style="red"), "LF": ", ".join(s.lfs)}
            for k, s in enumerate(path.steps, 1)]
    console.print(rich_table(rows, columns=("#", "test", "value", "outcome", "LF"), floatfmt="g", na="missing",
                             justify={"#": "right", "value": "right"}, title=f"{t.mode} tree: {tree.name}"))
    style = "bold yellow" if path.index < 0 else "bold"
    console.print(Text.assemble("label: ", (path.label, style)))
