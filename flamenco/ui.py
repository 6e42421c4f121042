"""What every command of the CLI shares: the two consoles and the one-line failure."""

from __future__ import annotations

from rich.console import Console

from flamenco.errors import fail as _exit_with
from flamenco_core.errors import EXIT_USAGE

#: Tables and summaries (stdout).
console = Console()
#: Warnings and progress that must not mix with a command's output (stderr).
err = Console(stderr=True)


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Print ``error: message`` on stderr and exit with ``code`` (default 2: a usage error). Plain text,
    one line: rich would wrap a long path mid-word and read [brackets] as markup."""
    _exit_with(message, code)
