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
    _patch_writes(module, patcher)

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


# -- writes that do not pass a SQL string: the relation API and extensions ------------------
# Each is asked about and recorded as the statement it amounts to, built from what the call
# names (the relation's own ``sql_query()``, the table, file or extension): the verb is always
# there, so a call whose SQL cannot be read still asks.


def _lit(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _rel_sql(rel) -> str:
    try:
        text = rel.sql_query()
    except Exception as e:
        log_once("duckdb relation sql_query", e)
        return "/* a relation whose SQL could not be read */ SELECT NULL"
    return text if isinstance(text, str) else str(text)


def _rel_target(rel) -> str:
    """The table a table relation writes to, as its SQL names it (with any alias)."""
    text = _rel_sql(rel)
    head = "SELECT * FROM "
    if text[: len(head)].upper() == head:
        return text[len(head) :]
    return f"({text})"


def _expr_text(module, value) -> str:
    if isinstance(value, str):
        return value
    expression = getattr(module, "Expression", None)
    if expression is not None and not isinstance(value, expression):
        try:
            value = module.ConstantExpression(value)
        except Exception:
            return repr(value)
    return str(value)


def _options(kwargs: dict, fmt: str) -> str:
    parts = [f"FORMAT {fmt}"]
    parts += [f"{k.upper()} {_lit(v)}" for k, v in kwargs.items() if v is not None]
    return ", ".join(parts)


def _render_update(module, rel, set=None, *, condition=None):  # noqa: A002 - duckdb's name
    assignments = ", ".join(
        f'"{str(k).replace(chr(34), chr(34) * 2)}" = {_expr_text(module, v)}'
        for k, v in (set.items() if hasattr(set, "items") else ())
    )
    where = "" if condition is None else f" WHERE {_expr_text(module, condition)}"
    return f"UPDATE {_rel_target(rel)} SET {assignments}{where}", None


def _render_insert(module, rel, values=None):
    row = list(values) if isinstance(values, list | tuple) else [values]
    markers = ", ".join("?" for _ in row)
    return f"INSERT INTO {_rel_target(rel)} VALUES ({markers})", row


def _render_insert_into(module, rel, table_name=None):
    return f"INSERT INTO {table_name} {_rel_sql(rel)}", None


def _render_create(module, rel, table_name=None):
    return f"CREATE TABLE {table_name} AS {_rel_sql(rel)}", None


def _render_view(module, rel, view_name=None, replace=True):
    verb = "CREATE OR REPLACE" if replace else "CREATE"
    return f"{verb} TEMPORARY VIEW {view_name} AS {_rel_sql(rel)}", None


def _render_csv(module, rel, file_name=None, **kwargs):
    return f"COPY ({_rel_sql(rel)}) TO {_lit(file_name)} ({_options(kwargs, 'csv')})", None


def _render_parquet(module, rel, file_name=None, **kwargs):
    return f"COPY ({_rel_sql(rel)}) TO {_lit(file_name)} ({_options(kwargs, 'parquet')})", None


def _render_module_csv(module, df=None, filename=None, **kwargs):
    kwargs.pop("connection", None)
    return (
        f"COPY (/* a data frame */ SELECT *) TO {_lit(filename)} ({_options(kwargs, 'csv')})",
        None,
    )


def _render_install(module, con, extension=None, **kwargs):
    verb = "FORCE INSTALL" if kwargs.get("force_install") else "INSTALL"
    repo = kwargs.get("repository_url") or kwargs.get("repository")
    version = kwargs.get("version")
    tail = (f" FROM {_lit(repo)}" if repo else "") + (
        f" VERSION {_lit(version)}" if version else ""
    )
    return f"{verb} {_lit(extension)}{tail}", None


def _render_load(module, con, extension=None, **_):
    return f"LOAD {_lit(extension)}", None


def _render_append(module, con, table_name=None, df=None, *, by_name=False, **_):
    how = " BY NAME" if by_name else ""
    return f"INSERT INTO {table_name}{how} SELECT * FROM (/* a data frame */ SELECT *)", None


def _render_appender(module, con, table=None, *, columns=None, action="insert", key=None, **_):
    cols = f" ({', '.join(str(c) for c in columns)})" if columns else ""
    rows = "(/* the rows appended, at each flush */ SELECT *)"
    keys = ", ".join(str(k) for k in key) if key else "<primary key>"
    action = str(action).lower()
    if action == "insert":
        return f"INSERT INTO {table}{cols} SELECT * FROM {rows}", None
    if action == "upsert":
        return f"INSERT OR REPLACE INTO {table}{cols} SELECT * FROM {rows}", None
    if action == "update":
        target = cols.strip() or "(<every column>)"
        return (
            f"UPDATE {table} SET {target} = appended.* FROM {rows} AS appended "
            f"WHERE ({keys}) = appended.({keys})",
            None,
        )
    if action == "delete":
        return f"DELETE FROM {table} WHERE ({keys}) IN {rows}", None
    return f"INSERT INTO {table}{cols} /* appender action {action!r} */ SELECT * FROM {rows}", None


def _render_query_appender(module, con, dml=None, *args, **_):
    """The DML runs at each flush, as written: that is the statement."""
    return _duck_text(dml), None


_RELATION_WRITES = {
    "update": ("UPDATE", _render_update),
    "insert": ("INSERT", _render_insert),
    "insert_into": ("INSERT", _render_insert_into),
    "create": ("CREATE TABLE", _render_create),
    "to_table": ("CREATE TABLE", _render_create),
    "create_view": ("CREATE VIEW", _render_view),
    "to_view": ("CREATE VIEW", _render_view),
    "write_csv": ("COPY", _render_csv),
    "to_csv": ("COPY", _render_csv),
    "write_parquet": ("COPY", _render_parquet),
    "to_parquet": ("COPY", _render_parquet),
}
_CONNECTION_WRITES = {
    "install_extension": ("INSTALL", _render_install),
    "load_extension": ("LOAD", _render_load),
    # asked when made: the appender's flushes then run what was asked about
    "append": ("INSERT", _render_append),
    "appender": ("INSERT", _render_appender),
    "query_appender": ("INSERT", _render_query_appender),
}
_MODULE_WRITES = {**_CONNECTION_WRITES, "write_csv": ("COPY", _render_module_csv)}


def _wrap_write(module, orig, name: str, verb: str, render, where: str):
    """``where``: "relation" (self is a relation), "connection" (self is a connection) or
    "module" (the connection, if any, is the ``connection`` keyword)."""

    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if should_skip():
            return orig(*args, **kwargs)
        token = _IN_SQL.set(True)  # reading the relation's SQL records nothing of its own
        try:
            if where == "module" and name in _CONNECTION_WRITES:
                text, params = render(module, kwargs.get("connection"), *args, **kwargs)
            else:
                text, params = render(module, *args, **kwargs)
        except Exception as e:
            log_once(f"duckdb {name}", e)
            text, params = f"{verb} /* duckdb {name}(): its statement could not be read */", None
        finally:
            _IN_SQL.reset(token)
        if where == "relation":
            con = getattr(args[0], "_con", None) if args else None
            database = None if con is None else _duck_database(con)
        elif where == "connection":
            database = _duck_database(args[0]) if args else None
        else:
            database = _duck_database(kwargs.get("connection"))
        ticket = None
        if approvals.held(text):
            ticket, frozen = approvals.check_sql("duckdb", database, text, params)
            if name == "insert" and frozen is not params:
                args = (args[0], frozen) + args[2:] if len(args) > 1 else args
                if "values" in kwargs:
                    kwargs = {**kwargs, "values": frozen}
            params = frozen
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
            call = name if where == "module" else f"{where}.{name}"
            report("duckdb", database, text, params_json(params), None, t0, err, {"call": call})

    return mark(wrapper)


def _patch_writes(module, patcher) -> None:
    targets = (
        (getattr(module, "DuckDBPyRelation", None), _RELATION_WRITES, "relation"),
        (getattr(module, "DuckDBPyConnection", None), _CONNECTION_WRITES, "connection"),
        (module, _MODULE_WRITES, "module"),
    )
    for owner, table, where in targets:
        if owner is None:
            continue
        for name, (verb, render) in table.items():
            orig = getattr(owner, name, None)
            if orig is not None and not is_wrapped(orig):
                patcher.replace(owner, name, _wrap_write(module, orig, name, verb, render, where))
