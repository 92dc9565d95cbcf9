"""The one kind of error a user sees: a problem they can fix, printed as one line, exit status 2.

Library code raises `UserError` where it knows what went wrong (which file, which record, which
flag). `describe` turns the exceptions that reach the top of a script from the outside world
(an unwritable path, a full disk, a file that is not text) into the same one line, so no bad
input ever ends in a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno


class UserError(Exception):
    """A problem the user can fix (bad input, bad flag, missing file): one line, no traceback."""


def describe(exc: BaseException) -> str | None:
    """The one-line message for an exception the user's environment or input caused, else None."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        if exc.errno == errno.ENOSPC:
            return f"{where}: no space left on the device" if where else "no space left on the device"
        reason = exc.strerror or str(exc)
        return f"{where}: {reason}" if where else reason
    if isinstance(exc, UnicodeEncodeError):  # the text is fine: where it goes cannot hold it (no text shown)
        return f"text that the output's {exc.encoding} encoding cannot hold: write UTF-8 (PYTHONIOENCODING=utf-8)"
    if isinstance(exc, UnicodeError):
        return f"text that is not valid UTF-8 ({exc})"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to read"
    return None
