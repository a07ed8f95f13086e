"""Any other PEP 249 driver: :func:`wrap_connection` returns a proxy whose cursors (and
``execute`` shortcut) report. Never patches anything: only what the user wraps is audited."""

from __future__ import annotations

from time import perf_counter_ns

from ... import approvals
from . import reporting
from .encoding import Sampler, params_json, strip_password
from .reporting import cursor_rowcount, report, should_skip

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL


class _CursorProxy:
    def __init__(self, cursor, driver, database):
        object.__setattr__(self, "_jad_cursor", cursor)
        object.__setattr__(self, "_jad_driver", driver)
        object.__setattr__(self, "_jad_database", database)

    def __getattr__(self, name):
        return getattr(self._jad_cursor, name)

    def __setattr__(self, name, value):
        setattr(self._jad_cursor, name, value)

    def __iter__(self):
        return iter(self._jad_cursor)

    def __enter__(self):
        self._jad_cursor.__enter__()
        return self

    def __exit__(self, *exc):
        return self._jad_cursor.__exit__(*exc)

    def execute(self, operation, *args, **kwargs):
        cur = self._jad_cursor
        if should_skip():
            return cur.execute(operation, *args, **kwargs)
        params = args[0] if args else kwargs.get("parameters", kwargs.get("params"))
        ticket = None
        if approvals.held(operation):
            ticket, frozen = approvals.check_sql(
                self._jad_driver, self._jad_database, operation, params
            )
            if ticket is not None and frozen is not params:
                params = frozen
                if args:
                    args = (frozen,) + args[1:]
                else:
                    key = "parameters" if "parameters" in kwargs else "params"
                    kwargs = {**kwargs, key: frozen}
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = result = None
        try:
            result = cur.execute(operation, *args, **kwargs)
            return self if result is cur else result
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            # a connection's execute shortcut returns the cursor that has the rowcount
            rc = None if err is not None else cursor_rowcount(cur if result is cur else result)
            report(
                self._jad_driver, self._jad_database, operation, params_json(params), rc, t0, err
            )
            if ticket is not None:
                ticket.done(rc, err)

    def executemany(self, operation, seq_of_parameters, *args, **kwargs):
        cur = self._jad_cursor
        if should_skip():
            return cur.executemany(operation, seq_of_parameters, *args, **kwargs)
        ticket = None
        if approvals.held(operation):
            ticket, seq_of_parameters = approvals.check_sql(
                self._jad_driver, self._jad_database, operation, seq_of_parameters, many=True
            )
        sampler = Sampler()
        seq = sampler.wrap(seq_of_parameters)
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = result = None
        try:
            result = cur.executemany(operation, seq, *args, **kwargs)
            return self if result is cur else result
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            rc = None if err is not None else cursor_rowcount(cur if result is cur else result)
            if ticket is not None:
                ticket.done(rc, err)
            report(
                self._jad_driver,
                self._jad_database,
                operation,
                sampler.payload(),
                rc,
                t0,
                err,
                {"executemany": True, "param_sets": sampler.count},
            )


class _ConnectionProxy:
    def __init__(self, conn, driver, database):
        object.__setattr__(self, "_jad_conn", conn)
        object.__setattr__(self, "_jad_driver", driver)
        object.__setattr__(self, "_jad_database", database)

    def __getattr__(self, name):
        return getattr(self._jad_conn, name)

    def __setattr__(self, name, value):
        setattr(self._jad_conn, name, value)

    def __enter__(self):
        self._jad_conn.__enter__()
        return self

    def __exit__(self, *exc):
        return self._jad_conn.__exit__(*exc)

    def cursor(self, *args, **kwargs):
        return _CursorProxy(
            self._jad_conn.cursor(*args, **kwargs), self._jad_driver, self._jad_database
        )

    # non-standard shortcuts some drivers have (sqlite3, duckdb, psycopg): the connection
    # reports like a cursor would
    def execute(self, operation, *args, **kwargs):
        proxy = _CursorProxy(self._jad_conn, self._jad_driver, self._jad_database)
        return proxy.execute(operation, *args, **kwargs)

    def executemany(self, operation, seq, *args, **kwargs):
        proxy = _CursorProxy(self._jad_conn, self._jad_driver, self._jad_database)
        return proxy.executemany(operation, seq, *args, **kwargs)


def wrap_connection(conn, driver: str, database: str | None = None):
    """Audit any PEP 249 connection: returns a proxy whose cursors (and ``execute``
    shortcut, if the driver has one) report ``op.sql`` events. ``database`` is recorded as
    given, without any password."""
    return _ConnectionProxy(conn, driver, strip_password(database))
