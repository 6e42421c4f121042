"""The root of the errors a user can act on, and the exit codes they map to.

Every expected failure raises a :class:`FlamencoError` whose message is one line (what happened, which
file, what to do); the command line prints it and exits with its ``exit_code``: 1 unusable, 2 usage, 3
output folder in use (README, "Exit codes and outcomes"). Pure: standard library only."""

from __future__ import annotations

EXIT_OK = 0
EXIT_UNUSABLE = 1
EXIT_USAGE = 2
EXIT_IN_USE = 3


class FlamencoError(Exception):
    """An expected failure with a one-line, actionable message; ``exit_code`` is the CLI's exit status."""

    exit_code: int = EXIT_UNUSABLE


class UsageError(FlamencoError):
    """Arguments, packs or configs that cannot work together (exit 2)."""

    exit_code = EXIT_USAGE


class NoUsableData(FlamencoError):
    """The input held nothing the pipeline can use (exit 1)."""

    exit_code = EXIT_UNUSABLE


__all__ = ["EXIT_IN_USE", "EXIT_OK", "EXIT_UNUSABLE", "EXIT_USAGE", "FlamencoError", "NoUsableData", "UsageError"]
