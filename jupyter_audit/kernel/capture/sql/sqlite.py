"""sqlite3: ``sqlite3.connect`` hands out audited subclasses whose ``execute`` is the raw fast
path. Never add a call, attribute lookup or import to that path."""

from __future__ import annotations

import functools
import sys
from time import perf_counter_ns, time_ns

from ... import approvals
from ... import context as _ctx
from ...context import active, is_wrapped, log_once, mark, thread_msg_id
from . import reporting
from .encoding import Sampler, params_json, strip_password
from .raw import SINGLE, RawSql, Rendered, failed, snapshot
from .reporting import audited_class, cursor_rowcount, report, should_skip

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL
_CELL_MSG_ID = _ctx.cell_msg_id_var
_next_op_index = _ctx.op_counter.__next__

# modules whose own bookkeeping connections are not user work
_IGNORED_CALLERS = ("IPython.core.history",)

_SQLITE = _ctx.register_encoder(RawSql("sqlite3"))
_RECORDED = frozenset({tuple, int, str, Rendered})  # forms params are recorded in
_SQL_PASS = approvals.SQL_PASS  # statements that never ask (read-only): one set lookup


def _gated(cursor, execute, sql, parameters, database):
    """A statement that may write: the approval broker decides before it runs (then it is
    reported through the general path; not the hot path)."""
    ticket, parameters = approvals.check_sql("sqlite3", database, sql, parameters)
    t0 = perf_counter_ns()
    token = _IN_SQL.set(True)
    err = None
    rc = None
    try:
        result = execute(sql, parameters)
        rc = cursor_rowcount(cursor)
        return result
    except BaseException as e:
        err = e
        raise
    finally:
        _IN_SQL.reset(token)
        report("sqlite3", database, sql, params_json(parameters), rc, t0, err)
        if ticket is not None:
            ticket.done(rc, err)


def _recover(queue, cursor, statement, params, t0: int, t1: int) -> None:
    """The record of a sqlite3 statement whose fast record failed (not the hot path)."""
    try:
        mid = _CELL_MSG_ID.get()
        if mid is None:
            mid = thread_msg_id()
        if params.__class__ not in _RECORDED:
            params = snapshot(params)
        conn = getattr(cursor, "connection", cursor)
        database = getattr(conn, "_jupyter_audit_db", None)
        rowcount = cursor_rowcount(cursor)
        queue.extend(
            (_SQLITE, mid, _next_op_index(), t1, statement, params, t0, rowcount, database, None)
        )
    except Exception as e:
        log_once("sqlite3 record", e)


class _SqliteCursorMixin:
    # no instance __dict__, as sqlite3.Cursor itself (and a smaller object to create)
    __slots__ = ()

    # the hot path: kept to the minimum (see raw.py)
    def execute(self, sql, parameters=(), /):
        queue = _ctx.queue
        if queue is None or _IN_SQL.get():
            return super().execute(sql, parameters)
        # only an exact str is looked up: a subclass's __eq__/__hash__ could match any entry
        if (sql.__class__ is not str or sql not in _SQL_PASS) and approvals.held(sql):
            return _gated(self, super().execute, sql, parameters, _sqlite_db(self))
        t0 = time_ns()
        try:
            result = super().execute(sql, parameters)
        except BaseException as e:
            failed(_SQLITE, queue, sql, parameters, t0, e, _sqlite_db(self))
            raise
        t1 = time_ns()
        try:
            mid = _CELL_MSG_ID.get()  # threads started in a cell carry it (context.py)
            if parameters.__class__ is not tuple:
                parameters = snapshot(parameters)
            elif len(parameters) == 1 and parameters[0].__class__ in SINGLE:
                parameters = parameters[0]
            queue.extend(
                (
                    _SQLITE,
                    mid,
                    _next_op_index(),
                    t1,
                    sql,
                    parameters,
                    t0,
                    self.rowcount,
                    self.connection._jupyter_audit_db,
                    None,
                )
            )
        except Exception:  # e.g. a cursor of ours on a connection that is not
            _recover(queue, self, sql, parameters, t0, t1)
        if len(queue) > _ctx.queue_limit:
            _ctx.pressure()  # never raises
        return result

    def executemany(self, sql, seq_of_parameters, /):
        if should_skip():
            return super().executemany(sql, seq_of_parameters)
        ticket, seq_of_parameters = approvals.check_sql(
            "sqlite3", _sqlite_db(self), sql, seq_of_parameters, many=True
        )
        sampler = Sampler()
        seq = sampler.wrap(seq_of_parameters)
        t0 = perf_counter_ns()
        err = None
        try:
            return super().executemany(sql, seq)
        except BaseException as e:
            err = e
            raise
        finally:
            rc = None if err is not None else self.rowcount
            if ticket is not None:
                ticket.done(rc, err)
            report(
                "sqlite3",
                _sqlite_db(self),
                sql,
                sampler.payload(),
                rc,
                t0,
                err,
                {"executemany": True, "param_sets": sampler.count},
            )

    def executescript(self, sql_script, /):
        if should_skip():
            return super().executescript(sql_script)
        ticket, _ = approvals.check_sql("sqlite3", _sqlite_db(self), sql_script)
        t0 = perf_counter_ns()
        try:
            result = super().executescript(sql_script)
        except BaseException as e:
            report("sqlite3", _sqlite_db(self), sql_script, None, None, t0, e, _SCRIPT)
            if ticket is not None:
                ticket.done(None, e)
            raise
        report("sqlite3", _sqlite_db(self), sql_script, None, None, t0, None, _SCRIPT)
        if ticket is not None:
            ticket.done(None, None)
        return result


_SCRIPT = {"script": True}


def _sqlite_db(cursor) -> str | None:
    return getattr(cursor.connection, "_jupyter_audit_db", None)


class _SqliteConnectionMixin:
    _jupyter_audit_db: str | None = None

    def cursor(self, factory=None):
        if factory is None:
            return super().cursor(_sqlite_cursor)
        return super().cursor(_audited_sqlite_cursor(factory))

    # The C implementations call the cursor internals directly; route them through an
    # audited cursor instead (same semantics: a new cursor, executed, returned). The
    # execute shortcut is the hot path: it records itself, like the cursor's execute.
    def execute(self, sql, parameters=(), /):
        cur = _sqlite_new_cursor(self, _sqlite_cursor)
        queue = _ctx.queue
        if queue is None or _IN_SQL.get():
            return _sqlite_execute(cur, sql, parameters)
        # only an exact str is looked up: a subclass's __eq__/__hash__ could match any entry
        if (sql.__class__ is not str or sql not in _SQL_PASS) and approvals.held(sql):
            _gated(cur, cur.execute, sql, parameters, self._jupyter_audit_db)
            return cur
        t0 = time_ns()
        try:
            _sqlite_execute(cur, sql, parameters)
        except BaseException as e:
            failed(_SQLITE, queue, sql, parameters, t0, e, self._jupyter_audit_db)
            raise
        t1 = time_ns()
        try:
            mid = _CELL_MSG_ID.get()  # threads started in a cell carry it (context.py)
            if parameters.__class__ is not tuple:
                parameters = snapshot(parameters)
            elif len(parameters) == 1 and parameters[0].__class__ in SINGLE:
                parameters = parameters[0]
            queue.extend(
                (
                    _SQLITE,
                    mid,
                    _next_op_index(),
                    t1,
                    sql,
                    parameters,
                    t0,
                    cur.rowcount,
                    self._jupyter_audit_db,
                    None,
                )
            )
        except Exception:
            _recover(queue, cur, sql, parameters, t0, t1)
        if len(queue) > _ctx.queue_limit:
            _ctx.pressure()  # never raises
        return cur

    def executemany(self, sql, parameters, /):
        return super().cursor(_sqlite_cursor).executemany(sql, parameters)

    def executescript(self, sql_script, /):
        return super().cursor(_sqlite_cursor).executescript(sql_script)


_sqlite_classes: dict[type, type] = {}
_sqlite_cursor: type | None = None  # the audited sqlite3.Cursor, once sqlite3 is patched


def _sqlite_new_cursor(conn, factory):  # sqlite3.Connection.cursor, once sqlite3 is patched
    raise RuntimeError("sqlite3 is not patched")


_sqlite_execute = _sqlite_new_cursor  # sqlite3.Cursor.execute, once sqlite3 is patched


def _audited_sqlite_cursor(factory):
    import sqlite3

    return audited_class(_sqlite_classes, factory, _SqliteCursorMixin, sqlite3.Cursor)


def _caller_ignored(depth: int = 2) -> bool:
    try:
        name = sys._getframe(depth).f_globals.get("__name__", "")
    except ValueError:
        return False
    return name.startswith(_IGNORED_CALLERS)


# sqlite3's classes are C types that cannot be patched: ``connect`` returns an audited
# subclass of the requested factory instead, so connections created *before* the extension
# loaded are not covered (nor connections made through a ``connect`` reference taken before
# load). A cursor factory is audited if it subclasses ``sqlite3.Cursor``.
def patch_sqlite3(module, patcher) -> None:
    global _sqlite_cursor, _sqlite_new_cursor, _sqlite_execute
    orig_connect = module.connect
    if is_wrapped(orig_connect):
        return
    _sqlite_cursor = _audited_sqlite_cursor(module.Cursor)
    # the C methods themselves (the audited cursor's own execute would record twice)
    _sqlite_new_cursor = module.Connection.cursor
    _sqlite_execute = module.Cursor.execute

    @functools.wraps(orig_connect)
    def connect(database, *args, **kwargs):
        if not active() or _caller_ignored():
            return orig_connect(database, *args, **kwargs)
        try:
            if len(args) >= 5:
                base = args[4]
            else:
                base = kwargs.get("factory", module.Connection)
            audited = audited_class(
                _sqlite_classes, base, _SqliteConnectionMixin, module.Connection
            )
            if audited is not base:
                if len(args) >= 5:
                    args = args[:4] + (audited,) + args[5:]
                else:
                    kwargs["factory"] = audited
        except Exception as e:
            log_once("sqlite3.connect", e)
        conn = orig_connect(database, *args, **kwargs)
        if isinstance(conn, _SqliteConnectionMixin):
            try:
                conn._jupyter_audit_db = strip_password(database)
            except Exception as e:
                log_once("sqlite3.connect database", e)
        return conn

    mark(connect)
    patcher.replace(module, "connect", connect)
    dbapi2 = sys.modules.get(module.__name__ + ".dbapi2")
    if dbapi2 is not None and getattr(dbapi2, "connect", None) is orig_connect:
        patcher.replace(dbapi2, "connect", connect)
