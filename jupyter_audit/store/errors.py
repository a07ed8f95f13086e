"""The errors a trail raises, and how a log line may show an error.

Why these live here rather than beside the code that raises them: callers (the server, the
CLI) catch `TrailError` whatever the backend that raised it, so they must not have to import
a backend's module (`schema`, DuckDB) to name it, and every layer of `store/` raises them, so
the module that defines them must depend on no other module of `store/`. This module imports
nothing of `store/` and must never do so: that is what keeps it out of every import cycle.
It must never hold a value that came from an event either (see `loggable_error`).
"""

from __future__ import annotations

from ..events import EventValidationError


class TrailError(Exception):
    """A trail that cannot be opened or used; the message is for the user."""


class TrailLockedError(TrailError):
    """Another process holds the trail open for writing."""


class TrailWriteError(TrailError):
    """The trail could not store a batch; nothing in it was acknowledged."""


def loggable_error(error: BaseException) -> str:
    """An error as a log line may show it: a validation error names fields, never values;
    of anything else (a bug while masking, say) only its type, as its text might quote the
    value it choked on."""
    return str(error) if isinstance(error, EventValidationError) else type(error).__name__
