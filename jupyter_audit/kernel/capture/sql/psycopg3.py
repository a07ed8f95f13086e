"""psycopg 3: ``execute``/``executemany``/``stream`` of its four cursor classes and
``Cursor.copy``/``AsyncCursor.copy``, through the general path. Never imports psycopg:
patches the module given."""

from __future__ import annotations

import contextlib
import functools
import weakref
from time import perf_counter_ns

from ... import approvals
from ...context import is_wrapped, mark
from . import reporting
from .encoding import Sampler, params_json, strip_password
from .reporting import cursor_rowcount, report, should_skip

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL

_pg_db: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _psycopg_database(cursor) -> str | None:
    try:
        conn = cursor.connection
    except Exception:
        return None
    try:
        db = _pg_db.get(conn)
        if db is None:
            db = strip_password(conn.info.dsn)  # psycopg already leaves the password out
            _pg_db[conn] = db
        return db
    except Exception:
        return None


def _psycopg_text(cursor, query):
    if isinstance(query, str | bytes):
        return query
    try:
        return query.as_string(cursor)
    except Exception:
        return str(query)


def _check(cursor, args, kwargs, many: bool):
    """Ask before a statement that may write: (args, kwargs, ticket or None); after a
    review, the parameters that run are the ones asked about."""
    query = args[0] if args else kwargs.get("query")
    if not approvals.held(query):
        return args, kwargs, None
    key = "params_seq" if many else "params"
    params = args[1] if len(args) > 1 else kwargs.get(key)
    ticket, frozen = approvals.check_sql(
        "psycopg", _psycopg_database(cursor), _psycopg_text(cursor, query), params, many=many
    )
    if ticket is not None and frozen is not params:
        if len(args) > 1:
            args = (args[0], frozen) + args[2:]
        else:
            kwargs = {**kwargs, key: frozen}
    return args, kwargs, ticket


def _wrap_psycopg(orig, *, many=False, is_async=False):
    def prepare(self, args, kwargs):
        query = args[0] if args else kwargs.get("query")
        sampler = None
        if many:
            sampler = Sampler()
            if len(args) > 1:
                args = (args[0], sampler.wrap(args[1])) + args[2:]
            elif "params_seq" in kwargs:
                kwargs["params_seq"] = sampler.wrap(kwargs["params_seq"])
            params = None
        else:
            params = args[1] if len(args) > 1 else kwargs.get("params")
        return query, params, sampler, args, kwargs

    def finish(self, query, params, sampler, t0, err, ticket):
        if ticket is not None:
            ticket.done(None if err is not None else cursor_rowcount(self), err)
        if sampler is not None:
            p = sampler.payload()
            extra = {"executemany": True, "param_sets": sampler.count}
        else:
            p = params_json(params)
            extra = None
        rc = None if err is not None else cursor_rowcount(self)
        report(
            "psycopg",
            _psycopg_database(self),
            _psycopg_text(self, query),
            p,
            rc,
            t0,
            err,
            extra,
        )

    if is_async:

        @functools.wraps(orig)
        async def wrapper(self, *args, **kwargs):
            if should_skip():
                return await orig(self, *args, **kwargs)
            args, kwargs, ticket = _check(self, args, kwargs, many)
            query, params, sampler, args, kwargs = prepare(self, args, kwargs)
            t0 = perf_counter_ns()
            token = _IN_SQL.set(True)
            err = None
            try:
                return await orig(self, *args, **kwargs)
            except BaseException as e:
                err = e
                raise
            finally:
                _IN_SQL.reset(token)
                finish(self, query, params, sampler, t0, err, ticket)

    else:

        @functools.wraps(orig)
        def wrapper(self, *args, **kwargs):
            if should_skip():
                return orig(self, *args, **kwargs)
            args, kwargs, ticket = _check(self, args, kwargs, many)
            query, params, sampler, args, kwargs = prepare(self, args, kwargs)
            t0 = perf_counter_ns()
            token = _IN_SQL.set(True)
            err = None
            try:
                return orig(self, *args, **kwargs)
            except BaseException as e:
                err = e
                raise
            finally:
                _IN_SQL.reset(token)
                finish(self, query, params, sampler, t0, err, ticket)

    return mark(wrapper)


class _AuditedCopy:
    """Context manager around psycopg's ``Cursor.copy``: one event when the block ends."""

    def __init__(self, cm, cursor, statement, params, ticket=None):
        self._cm, self._cursor, self._statement, self._params = cm, cursor, statement, params
        self._ticket = ticket  # an approved COPY: its outcome is known when the block ends
        self._t0 = perf_counter_ns()
        self._token = None

    def __enter__(self):
        self._token = _IN_SQL.set(True)
        return self._cm.__enter__()

    def __exit__(self, et, ev, tb):
        try:
            return self._cm.__exit__(et, ev, tb)
        except BaseException as e:
            ev = e
            raise
        finally:
            if self._token is not None:
                _IN_SQL.reset(self._token)
            rc = None if ev is not None else cursor_rowcount(self._cursor)
            if self._ticket is not None:
                self._ticket.done(rc, ev)
            report(
                "psycopg",
                _psycopg_database(self._cursor),
                _psycopg_text(self._cursor, self._statement),
                params_json(self._params),
                rc,
                self._t0,
                ev,
                {"copy": True},
            )


# ``Connection.execute`` goes through the cursors' ``execute``.
def patch_psycopg(module, patcher) -> None:
    for cls_name, is_async in (
        ("Cursor", False),
        ("ServerCursor", False),
        ("AsyncCursor", True),
        ("AsyncServerCursor", True),
    ):
        cls = getattr(module, cls_name, None)
        if cls is None:
            continue
        for name in ("execute", "executemany"):
            orig = cls.__dict__.get(name)
            if orig is not None and not is_wrapped(orig):
                patcher.replace(
                    cls, name, _wrap_psycopg(orig, many=name == "executemany", is_async=is_async)
                )
    cls = getattr(module, "Cursor", None)
    orig_copy = cls.__dict__.get("copy") if cls is not None else None
    if orig_copy is not None and not is_wrapped(orig_copy):

        @functools.wraps(orig_copy)
        def copy(self, statement, params=None, **kwargs):
            if should_skip():
                return orig_copy(self, statement, params, **kwargs)
            ticket = None
            if approvals.held(statement):
                ticket, params = approvals.check_sql(
                    "psycopg", _psycopg_database(self), _psycopg_text(self, statement), params
                )
            try:
                cm = orig_copy(self, statement, params, **kwargs)
            except BaseException as e:
                if ticket is not None:
                    ticket.done(None, e)
                raise
            return _AuditedCopy(cm, self, statement, params, ticket)

        patcher.replace(cls, "copy", mark(copy))

    # ``stream`` does not go through ``execute``; nor does the async cursor's ``copy``
    for cls_name, is_async in (
        ("Cursor", False),
        ("ServerCursor", False),
        ("AsyncCursor", True),
        ("AsyncServerCursor", True),
    ):
        cls = getattr(module, cls_name, None)
        orig = cls.__dict__.get("stream") if cls is not None else None
        if orig is not None and not is_wrapped(orig):
            patcher.replace(cls, "stream", _wrap_stream(orig, is_async))
    cls = getattr(module, "AsyncCursor", None)
    orig = cls.__dict__.get("copy") if cls is not None else None
    if orig is not None and not is_wrapped(orig):
        patcher.replace(cls, "copy", _wrap_async_copy(orig))


def _stream_check(cursor, args, kwargs):
    args, kwargs, ticket = _check(cursor, args, kwargs, False)
    query = args[0] if args else kwargs.get("query")
    params = args[1] if len(args) > 1 else kwargs.get("params")
    return args, kwargs, ticket, query, params


def _stream_done(cursor, query, params, t0, err, ticket) -> None:
    if ticket is not None:
        ticket.done(None, err)
    report(
        "psycopg",
        _psycopg_database(cursor),
        _psycopg_text(cursor, query),
        params_json(params),
        None,
        t0,
        err,
        {"call": "stream"},
    )


def _wrap_stream(orig, is_async: bool):
    """``stream`` runs its statement when iteration starts: it asks then, and is recorded
    when the iteration ends (early too)."""
    if is_async:

        @functools.wraps(orig)
        async def astream(self, *args, **kwargs):
            if should_skip():
                async for row in orig(self, *args, **kwargs):
                    yield row
                return
            args, kwargs, ticket, query, params = _stream_check(self, args, kwargs)
            t0, err = perf_counter_ns(), None
            try:
                async for row in orig(self, *args, **kwargs):
                    yield row
            except GeneratorExit:
                raise
            except BaseException as e:
                err = e
                raise
            finally:
                _stream_done(self, query, params, t0, err, ticket)

        return mark(astream)

    @functools.wraps(orig)
    def stream(self, *args, **kwargs):
        if should_skip():
            yield from orig(self, *args, **kwargs)
            return
        args, kwargs, ticket, query, params = _stream_check(self, args, kwargs)
        t0, err = perf_counter_ns(), None
        try:
            yield from orig(self, *args, **kwargs)
        except GeneratorExit:
            raise
        except BaseException as e:
            err = e
            raise
        finally:
            _stream_done(self, query, params, t0, err, ticket)

    return mark(stream)


def _wrap_async_copy(orig):
    @contextlib.asynccontextmanager
    async def copy(self, statement, params=None, **kwargs):
        if should_skip():
            async with orig(self, statement, params, **kwargs) as cp:
                yield cp
            return
        ticket = None
        if approvals.held(statement):
            ticket, params = approvals.check_sql(
                "psycopg", _psycopg_database(self), _psycopg_text(self, statement), params
            )
        t0, err = perf_counter_ns(), None
        try:
            async with orig(self, statement, params, **kwargs) as cp:
                yield cp
        except BaseException as e:
            err = e
            raise
        finally:
            rc = None if err is not None else cursor_rowcount(self)
            if ticket is not None:
                ticket.done(rc, err)
            report(
                "psycopg",
                _psycopg_database(self),
                _psycopg_text(self, statement),
                params_json(params),
                rc,
                t0,
                err,
                {"copy": True},
            )

    return mark(functools.wraps(orig)(copy))
