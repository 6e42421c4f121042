"""The layers hold (core < tasks < flows < CLI): imports are parsed with ``ast``, so a violation anywhere
in a module (also inside a function) fails here, and no library file grows past a reader's length."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("flamenco_core", "tasks", "flows", "flamenco")
#: What each layer may not import: a lower layer never imports a higher one; the core no orchestration.
FORBIDDEN = {
    "flamenco_core": {"tasks", "flows", "flamenco", "prefect", "mlflow"},
    "tasks": {"flows", "flamenco"},
    "flows": {"flamenco"},
    "flamenco": set(),
}
#: The one module that talks to MLflow (DESIGN.md).
MLFLOW_HOME = "tasks/tracking.py"
#: Modules that still import private names, each with the reason; the list only shrinks.
PRIVATE_IMPORTS = {
}
MAX_LINES = 500
#: Library files still over MAX_LINES, each with the reason; the list only shrinks.
LONG_FILES = {
}


MAX_DOCSTRING_LINES = 15
#: Modules whose docstring is still over MAX_DOCSTRING_LINES, each with the reason; the list only shrinks.
LONG_DOCSTRINGS: dict[str, str] = {
}


def _files(layer: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / layer).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, imported names)`` of every import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            out.append((node.lineno, module, [a.name for a in node.names]))
    return out


def _violations(root: Path = ROOT) -> list[str]:
    bad = []
    for layer in LAYERS:
        for path in _files(layer, root):
            rel = path.relative_to(root).as_posix()
            for line, module, names in _imports(path, root):
                top = module.split(".")[0]
                if top in FORBIDDEN[layer]:
                    bad.append(f"{rel}:{line}: {layer} imports {module}")
                elif top == "mlflow" and rel != MLFLOW_HOME:
                    bad.append(f"{rel}:{line}: mlflow outside {MLFLOW_HOME}")
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if top in LAYERS and private and rel not in PRIVATE_IMPORTS:
                    bad.append(f"{rel}:{line}: private name(s) {private} imported from {module}")
    return bad


def test_no_import_runs_against_the_layers():
    assert _violations() == []


def test_the_checker_sees_each_kind_of_violation(tmp_path):
    """The checker itself, on a tree with one violation of each rule (inside functions too)."""
    files = {
        "flamenco_core/bad.py": "def f():\n    from prefect import task\n",
        "flamenco_core/sub/rel.py": "from .._impl import _private\n",
        "tasks/up.py": "import flows.ingest\n",
        "flows/cli.py": "from flamenco import cli\n",
        "flows/track.py": "import mlflow\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "flamenco").mkdir()
    assert _violations(tmp_path) == [
        "flamenco_core/bad.py:2: flamenco_core imports prefect",
        "flamenco_core/sub/rel.py:1: private name(s) ['_private'] imported from flamenco_core._impl",
        "tasks/up.py:1: tasks imports flows.ingest",
        "flows/cli.py:1: flows imports flamenco",
        "flows/track.py:1: mlflow outside tasks/tracking.py",
    ]


@pytest.mark.parametrize("path", [p.relative_to(ROOT).as_posix() for p in _files("flamenco_core")])
def test_library_files_stay_short(path):
    lines = len((ROOT / path).read_text().splitlines())
    if path in LONG_FILES:
        return
    assert lines <= MAX_LINES, f"{path}: {lines} lines (at most {MAX_LINES}; split it by concern)"


def test_the_long_file_list_only_names_long_files():
    for path, reason in LONG_FILES.items():
        if (ROOT / path).is_file():  # a file split away (e.g. into a package) may still be listed
            assert reason and len((ROOT / path).read_text().splitlines()) > MAX_LINES, f"{path} is short now: drop it"


def _docstring_lines(path: str) -> int:
    doc = ast.get_docstring(ast.parse((ROOT / path).read_text(), path))
    return len(doc.splitlines()) if doc else 0


@pytest.mark.parametrize("path", [p.relative_to(ROOT).as_posix() for layer in LAYERS for p in _files(layer)])
def test_module_docstrings_stay_short(path):
    """A module docstring says what the module is for; design notes and figures go to docs/."""
    if path in LONG_DOCSTRINGS:
        return
    lines = _docstring_lines(path)
    assert lines <= MAX_DOCSTRING_LINES, (
        f"{path}: module docstring of {lines} lines (at most {MAX_DOCSTRING_LINES}; move the notes to docs/)")


def test_the_long_docstring_list_only_names_long_docstrings():
    for path, reason in LONG_DOCSTRINGS.items():
        if (ROOT / path).is_file():  # a file split away may still be listed
            assert reason and _docstring_lines(path) > MAX_DOCSTRING_LINES, f"{path}'s docstring is short now: drop it"


def test_the_private_import_list_only_names_modules_that_need_it():
    for path, reason in PRIVATE_IMPORTS.items():
        private = [n for _, module, names in _imports(ROOT / path, ROOT) if module.split(".")[0] in LAYERS
                   for n in names if n.startswith("_") and not n.startswith("__")]
        assert reason and private, f"{path} imports no private name now: drop it"


#: A repeated block: this many consecutive code lines (blank and comment lines, docstrings and function
#: signatures skipped: an API may repeat its keyword arguments; whitespace stripped) standing the same in two
#: places of the library, with enough text not to be punctuation alone.
REPEAT_LINES = 8
REPEAT_MIN_CHARS = 160


def _repeated_blocks(root: Path = ROOT, layer: str = "flamenco_core") -> list[str]:
    """``a.py:10 ~ b.py:40`` for each pair of places sharing a block of :data:`REPEAT_LINES` lines."""
    first: dict[tuple[str, ...], tuple[str, int]] = {}
    found: dict[tuple[str, str], str] = {}
    for path in _files(layer, root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text()
        skip = _signature_and_docstring_lines(ast.parse(text))
        code = [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if i not in skip]
        code = [(i, s) for i, s in code if s and not s.startswith("#")]
        for k in range(len(code) - REPEAT_LINES + 1):
            block = tuple(s for _, s in code[k:k + REPEAT_LINES])
            if sum(map(len, block)) < REPEAT_MIN_CHARS:
                continue
            here = (rel, code[k][0])
            there = first.setdefault(block, here)
            if there != here and (there[0], rel) not in found:
                found[(there[0], rel)] = f"{there[0]}:{there[1]} ~ {rel}:{here[1]}"
    return sorted(found.values())


def _signature_and_docstring_lines(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                skip.update(range(node.lineno, first.lineno))
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                skip.update(range(first.lineno, first.end_lineno + 1))
    return skip


def test_no_block_is_written_twice_in_the_library():
    assert _repeated_blocks() == []


def test_the_repeat_checker_sees_a_copied_block(tmp_path):
    block = "\n".join(f"value_{i} = compute_something_long(argument_{i}, other_{i})" for i in range(REPEAT_LINES))
    (tmp_path / "flamenco_core").mkdir()
    (tmp_path / "flamenco_core" / "a.py").write_text(block + "\n")
    (tmp_path / "flamenco_core" / "b.py").write_text("x = 1\n\n" + block.replace("\n", "\n# a comment\n") + "\n")
    assert _repeated_blocks(tmp_path) == ["flamenco_core/a.py:1 ~ flamenco_core/b.py:3"]


def test_every_library_module_imports_first():
    """Each ``flamenco_core`` module imports in an interpreter where no other project module is loaded yet,
    so that no import cycle hides behind the order in which tests (or a CLI command) happen to import."""
    import subprocess
    import sys

    names = [".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in _files("flamenco_core")]
    # One interpreter, the project's modules dropped before each import (third-party ones stay loaded:
    # they cannot close a cycle through the project, and reloading them would take minutes).
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for k in [k for k in sys.modules if k == 'flamenco_core' or k.startswith('flamenco_core.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
