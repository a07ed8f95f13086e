"""The one rule for a record that failed after it was handed over: log it through
`loggable_error` (a validation error's text names fields; of anything else only its type),
never a value it might quote."""

from __future__ import annotations

from ..store.errors import loggable_error


def failure_logger(log, what: str):
    """A done-callback for a writer future: logs `what … not stored: <loggable error>`."""

    def done(fut) -> None:
        exc = fut.exception()
        if exc is not None:
            log.error("jupyter-audit: %s not stored: %s", what, loggable_error(exc))

    return done
