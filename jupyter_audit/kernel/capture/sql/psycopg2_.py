"""psycopg2: ``psycopg2.connect`` gets a connection factory whose cursors are audited
subclasses. Imports psycopg2 only inside functions, never at module level."""

from __future__ import annotations

import functools
from time import perf_counter_ns

from ... import approvals
from ...context import active, is_wrapped, log_once, mark
from . import reporting
from .encoding import Sampler, params_json
from .reporting import audited_class, cursor_rowcount, report, should_skip

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL

_pg2_classes: dict[type, type] = {}


class _Pg2CursorMixin:
    def execute(self, query, vars=None):
        if should_skip():
            return super().execute(query, vars)
        ticket = None
        if approvals.held(query):
            ticket, vars = approvals.check_sql(
                "psycopg2", _pg2_db(self), _pg2_text(query, self), vars
            )
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = None
        try:
            return super().execute(query, vars)
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            rc = None if err is not None else cursor_rowcount(self)
            report(
                "psycopg2", _pg2_db(self), _pg2_text(query, self), params_json(vars), rc, t0, err
            )
            if ticket is not None:
                ticket.done(rc, err)

    def executemany(self, query, vars_list):
        if should_skip():
            return super().executemany(query, vars_list)
        ticket = None
        if approvals.held(query):
            ticket, vars_list = approvals.check_sql(
                "psycopg2", _pg2_db(self), _pg2_text(query, self), vars_list, many=True
            )
        sampler = Sampler()
        seq = sampler.wrap(vars_list)
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = None
        try:
            return super().executemany(query, seq)
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            rc = None if err is not None else cursor_rowcount(self)
            if ticket is not None:
                ticket.done(rc, err)
            report(
                "psycopg2",
                _pg2_db(self),
                _pg2_text(query, self),
                sampler.payload(),
                rc,
                t0,
                err,
                {"executemany": True, "param_sets": sampler.count},
            )

    def callproc(self, procname, parameters=None):
        if should_skip():
            return super().callproc(procname, parameters)
        # a procedure is code the policy cannot see into: asked about as the CALL it is
        ticket, parameters = approvals.check_sql(
            "psycopg2", _pg2_db(self), f"CALL {procname}", parameters
        )
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = None
        try:
            return super().callproc(procname, parameters)
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            report(
                "psycopg2",
                _pg2_db(self),
                f"CALL {procname}",
                params_json(parameters),
                None,
                t0,
                err,
                {"callproc": True},
            )
            if ticket is not None:
                ticket.done(None, err)


def _pg2_text(query, cursor):
    """The SQL a query object amounts to: psycopg2.sql.Composed renders with the cursor (its
    repr quotes the verbs, which would hide them from the policy)."""
    if isinstance(query, str | bytes):
        return query
    try:
        return query.as_string(cursor)
    except Exception:
        try:
            return str(query)
        except Exception:
            return repr(query)


def _pg2_db(cursor) -> str | None:
    conn = getattr(cursor, "connection", None)
    db = getattr(conn, "_jupyter_audit_db", None)
    if db is None and conn is not None:
        try:
            p = conn.get_dsn_parameters()  # never includes the password
            db = " ".join(f"{k}={p[k]}" for k in ("host", "port", "dbname", "user") if p.get(k))
            conn._jupyter_audit_db = db
        except Exception:
            return None
    return db


class _Pg2ConnectionMixin:
    def cursor(self, *args, **kwargs):
        import psycopg2.extensions

        factory = kwargs.get("cursor_factory") or self.cursor_factory or psycopg2.extensions.cursor
        kwargs["cursor_factory"] = audited_class(
            _pg2_classes, factory, _Pg2CursorMixin, psycopg2.extensions.cursor
        )
        return super().cursor(*args, **kwargs)


def patch_psycopg2(module, patcher) -> None:
    orig_connect = module.connect
    if is_wrapped(orig_connect):
        return

    @functools.wraps(orig_connect)
    def connect(dsn=None, connection_factory=None, cursor_factory=None, **kwargs):
        if active():
            try:
                import psycopg2.extensions

                connection_factory = audited_class(
                    _pg2_classes,
                    connection_factory or psycopg2.extensions.connection,
                    _Pg2ConnectionMixin,
                    psycopg2.extensions.connection,
                )
            except Exception as e:
                log_once("psycopg2.connect", e)
        return orig_connect(
            dsn, connection_factory=connection_factory, cursor_factory=cursor_factory, **kwargs
        )

    patcher.replace(module, "connect", mark(connect))
