"""How a command ends: one line and an exit code for every expected failure; a traceback only with
``--debug`` (or ``FLAMENCO_DEBUG=1``).

The policy (README, "Exit codes and outcomes"): 0 the run produced what was asked for (partial results
counted in its summary); 1 nothing usable came out or the input is unusable; 2 a usage error; 3 the
output folder is in use. :class:`FlamencoGroup` is the typer group of the ``flamenco`` app: it wraps
every command (sub-apps included) and maps what escapes it with :func:`describe`.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any, Optional, Sequence

import click
import typer
from typer.core import TyperGroup

from flamenco_core.env import DEBUG_ENV, debug_enabled
from flamenco_core.errors import EXIT_UNUSABLE, FlamencoError

DEBUG_FLAG = "--debug"
EXIT_INTERRUPTED = 130

#: What click (or the copy of click that recent Typer versions ship as ``typer._click``) handles itself:
#: usage errors print click's usage line and exit 2, exits and aborts keep their codes.
_CLICK_HANDLES = tuple({
    typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
    *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
})


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    what = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    hints = {
        errno.ENOSPC: "free some space or choose another output folder",
        errno.EDQUOT: "free some space or choose another output folder",
        errno.EFBIG: "the file system refuses a file this large; choose another output folder",
        errno.EACCES: "check the permissions, or choose another path",
        errno.EROFS: "choose a writable output folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }
    hint = hints.get(exc.errno or 0)
    text = f"{where}: {what}" if where else what
    return f"{text}; {hint}" if hint else text


def describe(exc: BaseException) -> Optional[tuple[str, int]]:
    """``(one line, exit code)`` for an expected failure, ``None`` for anything else (a bug)."""
    if isinstance(exc, FlamencoError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code
    if isinstance(exc, OSError):
        return _os_message(exc), EXIT_UNUSABLE
    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller input or more memory", EXIT_UNUSABLE
    return None


def fail(message: str, code: int) -> None:
    """Print ``error: message`` on stderr (plain text: no markup, no wrapping) and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _strip_debug(args: Sequence[str]) -> list[str]:
    """``args`` without ``--debug`` (accepted anywhere before ``--``); sets :data:`DEBUG_ENV` when found."""
    out: list[str] = []
    seen_end = False
    for a in args:
        if not seen_end and a == DEBUG_FLAG:
            os.environ[DEBUG_ENV] = "1"
            continue
        seen_end = seen_end or a == "--"
        out.append(a)
    return out


def _one_line_short_help(cmd: click.Command) -> None:
    """A command list shows each command's first docstring paragraph; Typer's rich mode keeps its line
    breaks there, which cuts the list's lines short mid-sentence. Join them (and in subgroups)."""
    if cmd.short_help is None and cmd.help:
        cmd.short_help = " ".join(cmd.help.split("\n\n")[0].split())
    for sub in getattr(cmd, "commands", {}).values():
        _one_line_short_help(sub)


class FlamencoGroup(TyperGroup):
    """The app's group: ``--debug`` anywhere on the line, and expected failures as one line and an exit
    code instead of a traceback (:func:`describe`; unexpected ones say to rerun with ``--debug``)."""

    def main(self, args: Optional[Sequence[str]] = None, *a: Any, **kw: Any) -> Any:
        args = _strip_debug(sys.argv[1:] if args is None else list(args))
        return super().main(args, *a, **kw)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _one_line_short_help(cmd)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _CLICK_HANDLES:
            raise
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            fail("interrupted", EXIT_INTERRUPTED)
        except Exception as exc:
            if debug_enabled():
                raise
            known = describe(exc)
            if known is None:
                first = (str(exc).splitlines() or [""])[0]
                known = (f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
                         EXIT_UNUSABLE)
            fail(*known)


__all__ = ["DEBUG_ENV", "FlamencoGroup", "debug_enabled", "describe", "fail"]
