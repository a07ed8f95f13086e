"""duckdb: ``DuckDBPyConnection``'s statement methods and the module-level ones (the default
connection), through the general path. Never imports duckdb: patches the module given."""

from __future__ import annotations

import functools
import weakref
from time import perf_counter_ns

from ... import approvals
from ...context import is_wrapped, log_once, mark
from . import reporting
from .encoding import Sampler, params_json, strip_password
from .reporting import report, should_skip

_IN_SQL = reporting.IN_SQL  # assigned, not imported: see reporting.IN_SQL

_duck_db: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _duck_database(con) -> str | None:
    if con is None:
        return ":default:"
    try:
        return _duck_db.get(con)
    except TypeError:
        return None


# ``sql``/``query`` build a lazy relation: the event's duration covers planning, not
# fetching, and rowcount is null.
def _wrap_duck(orig, name: str, many: bool = False, method: bool = True):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if should_skip():
            return orig(*args, **kwargs)
        rest = args[1:] if method else args
        query = _duck_text(rest[0] if rest else kwargs.get("query"))
        con = args[0] if method else kwargs.get("connection")
        ticket = None
        if approvals.held(query):
            args, kwargs, ticket = _check(name, con, query, args, kwargs, method, many)
            rest = args[1:] if method else args
        if many:
            params = rest[1] if len(rest) > 1 else kwargs.get("parameters")
            sampler = Sampler()
            if params is not None:
                params = sampler.wrap(params)
                if method:
                    args = (args[0], rest[0], params) + rest[2:]
                else:
                    args = (rest[0], params) + rest[2:]
                kwargs.pop("parameters", None)
        elif name in ("sql", "query", "from_query"):
            params = kwargs.get("params")
        else:
            params = rest[1] if len(rest) > 1 else kwargs.get("parameters")
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = None
        try:
            return orig(*args, **kwargs)
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            if ticket is not None:
                ticket.done(None, err)
            if many:
                p = sampler.payload()
                extra = {"executemany": True, "param_sets": sampler.count, "call": name}
            else:
                p = params_json(params)
                extra = {"call": name}
            report("duckdb", _duck_database(con), query, p, None, t0, err, extra)

    return mark(wrapper)


def _duck_text(query):
    """A duckdb.Statement (from `extract_statements`) runs its `query`: that is its text, not
    the object's repr."""
    if query.__class__ is str:
        return query
    text = getattr(query, "query", None)
    return text if isinstance(text, str) else query


def _check(name, con, query, args, kwargs, method: bool, many: bool):
    """Ask before a statement that may write; after a review, the parameters that run are
    the ones asked about. Returns (args, kwargs, ticket or None)."""
    rest = args[1:] if method else args
    key = "params" if name in ("sql", "query", "from_query") else "parameters"
    positional = len(rest) > 1 and key == "parameters"
    params = rest[1] if positional else kwargs.get(key)
    ticket, frozen = approvals.check_sql("duckdb", _duck_database(con), query, params, many=many)
    if ticket is not None and frozen is not params:
        if positional:
            i = 2 if method else 1
            args = args[:i] + (frozen,) + args[i + 1 :]
        else:
            kwargs = {**kwargs, key: frozen}
    return args, kwargs, ticket


def patch_duckdb(module, patcher) -> None:
    cls = module.DuckDBPyConnection
    for name in ("execute", "executemany", "sql", "query", "from_query"):
        orig = getattr(cls, name, None)
        if orig is not None and not is_wrapped(orig):
            patcher.replace(cls, name, _wrap_duck(orig, name, many=name == "executemany"))
        orig = getattr(module, name, None)
        if orig is not None and not is_wrapped(orig):
            patcher.replace(
                module, name, _wrap_duck(orig, name, many=name == "executemany", method=False)
            )

    rel_cls = getattr(module, "DuckDBPyRelation", None)
    orig_rel_query = getattr(rel_cls, "query", None)
    if orig_rel_query is not None and not is_wrapped(orig_rel_query):
        patcher.replace(rel_cls, "query", _wrap_relation_query(orig_rel_query))

    orig_connect = module.connect
    if not is_wrapped(orig_connect):

        @functools.wraps(orig_connect)
        def connect(*args, **kwargs):
            con = orig_connect(*args, **kwargs)
            try:
                db = args[0] if args else kwargs.get("database", ":memory:")
                _duck_db[con] = strip_password(db) or ":memory:"
            except Exception as e:
                log_once("duckdb.connect", e)
            return con

        patcher.replace(module, "connect", mark(connect))

    orig_cursor = cls.cursor
    if not is_wrapped(orig_cursor):

        @functools.wraps(orig_cursor)
        def cursor(self, *args, **kwargs):
            cur = orig_cursor(self, *args, **kwargs)
            try:
                db = _duck_db.get(self)
                if db is not None:
                    _duck_db[cur] = db
            except Exception as e:
                log_once("duckdb.cursor", e)
            return cur

        patcher.replace(cls, "cursor", mark(cursor))


def _wrap_relation_query(orig):
    """``DuckDBPyRelation.query(name, sql)`` runs any SQL (a DELETE too) on the relation's
    connection: asked about and recorded like ``execute``."""

    @functools.wraps(orig)
    def query(self, virtual_table_name, sql_query, *args, **kwargs):
        if should_skip():
            return orig(self, virtual_table_name, sql_query, *args, **kwargs)
        text = _duck_text(sql_query)
        ticket = None
        if approvals.held(text):
            ticket, _ = approvals.check_sql("duckdb", None, text, None)
        t0 = perf_counter_ns()
        token = _IN_SQL.set(True)
        err = None
        try:
            return orig(self, virtual_table_name, sql_query, *args, **kwargs)
        except BaseException as e:
            err = e
            raise
        finally:
            _IN_SQL.reset(token)
            if ticket is not None:
                ticket.done(None, err)
            report("duckdb", None, text, None, None, t0, err, {"call": "relation.query"})

    return mark(query)
