"""The root of the errors a user can act on, and the exit codes they map to.

Every expected failure (unusable input, a pack that does not fit the data, an output folder in use, a
usage mistake) raises a :class:`FlamencoError` whose message is one line saying what happened, which
file, and what to do. The command line prints that line and exits with the error's ``exit_code``; the
codes are the outcome policy of the README ("Exit codes and outcomes"):

- 0: the run produced what it was asked for (partial results are counted in the summary);
- 1 (:data:`EXIT_UNUSABLE`): nothing usable came out, or the input is unusable;
- 2 (:data:`EXIT_USAGE`): a usage error (arguments, a pack or config that does not fit);
- 3 (:data:`EXIT_IN_USE`): the output folder is in use by another run.

Pure: standard library only.
"""

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
