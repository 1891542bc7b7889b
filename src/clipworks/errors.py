"""The project's error types: bad input from the user or their files, as opposed to a bug in clipworks.

Each message says what was found and what to change. The CLI prints these (and a missing file) as one line with
exit code 2; anything else is a bug and keeps its traceback.
"""

import sys


class ClipworksError(Exception):
    """Input that clipworks cannot use as given."""


class ConfigError(ClipworksError, ValueError):
    """A setting that cannot work: a flag, a config file value, a model or recipe name."""


class DataError(ClipworksError, ValueError):
    """The data cannot be used as given."""


class CheckpointError(ClipworksError):
    """A file that is not a loadable checkpoint; the message names the file and what was expected."""


class DiskFullError(ClipworksError, OSError):
    """A write that did not fit on its file system; the message names the directory and the space needed."""


class SearchIndexError(ClipworksError, ValueError):
    """An index directory or source that cannot be used as given."""


class DataWarning(UserWarning):
    """Data that can be used but looks wrong (e.g. a caption spanning lines that look like rows); worth a look."""


def counted(n: int, one: str, many: str | None = None) -> str:
    """`n` and the noun in its number, for messages: 1 unreadable image, 2 unreadable images (`many` defaults to
    `one` + "s")."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def user_stacklevel() -> int:
    """The stacklevel, for a `warnings.warn` in the caller, of the nearest frame outside the clipworks package: the
    user's line, whichever of the package's functions it called and through how many of them. Python 3.12's
    `warn(skip_file_prefixes=...)` does this; clipworks supports 3.10."""
    package = __name__.partition(".")[0]
    frame, level = sys._getframe(1), 1  # level 1: the caller, which calls warnings.warn
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] == package:
        frame, level = frame.f_back, level + 1
    return level
