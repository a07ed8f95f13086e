"""The general path every driver reports through (one ``op.sql`` event per call), the guard
against reporting a call made underneath another, audited subclasses. Never raises."""

from __future__ import annotations

from contextvars import ContextVar
from time import perf_counter_ns

from ...context import active, log_once, record
from .encoding import STATEMENT_CAP, error_text, statement_text

# Set while a reported SQL call is in progress (including SQLAlchemy's cursor execution),
# so that a driver call made underneath it is not reported a second time. Driver modules
# bind it by assignment (``_IN_SQL = reporting.IN_SQL``), not by ``from .reporting import``:
# CPython compiles ``name.get()`` on a name an import statement bound without LOAD_METHOD,
# which costs a bound-method object on every call of the per-statement paths.
IN_SQL: ContextVar[bool] = ContextVar("jupyter_audit_in_sql", default=False)


def should_skip() -> bool:
    return IN_SQL.get() or not active()


def report(
    driver: str,
    database,
    statement,
    params,
    rowcount,
    t0: int,
    error: BaseException | None = None,
    extra: dict | None = None,
) -> None:
    """Record one op.sql event; never raises. Kept lean: it runs once per statement."""
    duration_us = (perf_counter_ns() - t0) // 1000
    try:
        more = None
        if type(statement) is not str or len(statement) > STATEMENT_CAP:
            statement, more = statement_text(statement)
        if rowcount is not None and (type(rowcount) is not int or rowcount < 0):
            rowcount = None
        payload = {
            "driver": driver,
            "database": database,
            "statement": statement,
            "params": params,
            "rowcount": rowcount,
            "duration_us": duration_us,
            "error": None if error is None else error_text(error),
        }
        if more:
            payload.update(more)
        if extra:
            payload.update(extra)
        record("op.sql", payload)
    except Exception as e:
        log_once(f"sql report ({driver})", e)


def cursor_rowcount(cursor):
    try:
        return cursor.rowcount
    except Exception:
        return None


def audited_class(cache: dict, base, mixin: type, root: type):
    """``base`` with ``mixin`` in front (cached), or ``base`` itself when it is not a
    subclass of ``root`` (a factory function we cannot subclass: passed through)."""
    if not (isinstance(base, type) and issubclass(base, root)):
        return base
    if issubclass(base, mixin):
        return base
    cls = cache.get(base)
    if cls is None:
        namespace: dict[str, object] = {"__module__": mixin.__module__}
        if "__slots__" in mixin.__dict__:
            namespace["__slots__"] = ()
        cls = type(base.__name__, (mixin, base), namespace)
        cache[base] = cls
    return cls
