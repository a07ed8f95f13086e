"""SQLAlchemy: cursor-execution listeners on ``Engine`` (``pandas.read_sql``, ORMs); the DB-API
layer underneath never reports the same statement again. Imports sqlalchemy only in functions."""

from __future__ import annotations

from contextvars import ContextVar
from time import perf_counter_ns

from ... import approvals
from ...context import active
from . import reporting
from .encoding import PARAM_ITEMS_CAP, params_json
from .reporting import cursor_rowcount, report

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL

_SA_ATTR = "_jupyter_audit_sa"
_sa_state: ContextVar[tuple | None] = ContextVar("jupyter_audit_sa", default=None)


def _sa_database(engine) -> str | None:
    try:
        db = getattr(engine, "_jupyter_audit_db", None)
        if db is None:
            url = engine.url
            try:
                url = url.set(password=None)
            except Exception:
                pass
            db = url.render_as_string(hide_password=True)
            try:
                engine._jupyter_audit_db = db
            except Exception:
                pass
        return db
    except Exception:
        return None


def _sa_before(conn, cursor, statement, parameters, context, executemany):
    if _IN_SQL.get() or not active():
        return
    ticket = None
    if approvals.held(statement):
        # raises when it must not run: SQLAlchemy passes the error on, the driver never
        # sees the statement. Parameters are not copied (this hook cannot replace them):
        # SQLAlchemy built them for this call and holds them while it waits here.
        engine = getattr(conn, "engine", conn)
        ticket, _ = approvals.check_sql(
            "sqlalchemy", _sa_database(engine), statement, parameters, many=executemany
        )
    state = (perf_counter_ns(), _IN_SQL.set(True), ticket)
    if context is not None:
        try:
            setattr(context, _SA_ATTR, state)
            return
        except Exception:
            pass
    _sa_state.set(state)


def _sa_take(context):
    state = None
    if context is not None:
        state = getattr(context, _SA_ATTR, None)
        if state is not None:
            try:
                delattr(context, _SA_ATTR)
            except Exception:
                pass
    if state is None:
        state = _sa_state.get()
        if state is not None:
            _sa_state.set(None)
    if state is not None:
        try:
            _IN_SQL.reset(state[1])
        except ValueError:
            _IN_SQL.set(False)
    return state


def _sa_report(conn_or_engine, statement, parameters, executemany, t0, rowcount, err):
    engine = getattr(conn_or_engine, "engine", conn_or_engine)
    dialect = getattr(engine, "dialect", None)
    if executemany and isinstance(parameters, list | tuple):
        p = [params_json(x) for x in parameters[:PARAM_ITEMS_CAP]]
        extra = {"executemany": True, "param_sets": len(parameters)}
    else:
        p = params_json(parameters)
        extra = {}
    if dialect is not None:
        extra["dialect"] = f"{dialect.name}+{dialect.driver}"
    report("sqlalchemy", _sa_database(engine), statement, p, rowcount, t0, err, extra)


def _sa_after(conn, cursor, statement, parameters, context, executemany):
    state = _sa_take(context)
    if state is None:
        return
    rowcount = cursor_rowcount(cursor)
    if state[2] is not None:
        state[2].done(rowcount, None)
    _sa_report(conn, statement, parameters, executemany, state[0], rowcount, None)


def _sa_error(exception_context):
    ctx = exception_context.execution_context
    state = _sa_take(ctx)
    if state is None or exception_context.statement is None:
        return
    conn = exception_context.connection or exception_context.engine
    err = exception_context.original_exception or exception_context.sqlalchemy_exception
    if state[2] is not None:
        state[2].done(None, err)
    _sa_report(
        conn,
        exception_context.statement,
        exception_context.parameters,
        bool(getattr(ctx, "executemany", False)),
        state[0],
        None,
        err,
    )


def patch_sqlalchemy(module, patcher) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if event.contains(Engine, "before_cursor_execute", _sa_before):
        return
    listeners = (
        ("before_cursor_execute", _sa_before),
        ("after_cursor_execute", _sa_after),
        ("handle_error", _sa_error),
    )
    for name, fn in listeners:
        event.listen(Engine, name, fn)

    def unpatch() -> None:
        for n, f in listeners:
            event.remove(Engine, n, f)

    patcher.defer(unpatch)
