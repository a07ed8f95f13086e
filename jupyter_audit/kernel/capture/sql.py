"""SQL capture: one ``op.sql`` event per statement executed from notebook code.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Reports the statement, parameters and the database (DSN/path without password) as
they are; the server masks them before anything is stored.

Covered:
- sqlite3: ``sqlite3.connect`` returns an audited subclass of the requested factory, whose
  ``execute``/``executemany``/``executescript`` shortcuts and cursors (any cursor factory
  that subclasses ``sqlite3.Cursor``) report. sqlite3's classes are C types that cannot be
  patched, so connections created *before* the extension loaded are not covered (nor
  connections made through a ``connect`` reference taken before load).
- duckdb: class methods of ``DuckDBPyConnection`` (``execute``, ``executemany``, ``sql``,
  ``query``, ``from_query``) and the module-level ``duckdb.execute/executemany/sql/query/
  from_query`` that use the default connection. ``sql``/``query`` build a lazy relation:
  the event's duration covers planning, not fetching, and rowcount is null.
- psycopg 3: ``Cursor``/``ServerCursor``/``AsyncCursor``/``AsyncServerCursor`` ``execute``
  and ``executemany`` (``Connection.execute`` goes through them), ``Cursor.copy``.
- psycopg2: ``psycopg2.connect`` gets a connection factory whose ``cursor()`` returns an
  audited subclass of the requested cursor factory.
- SQLAlchemy: ``before/after_cursor_execute`` and ``handle_error`` on ``Engine`` (covers
  ``pandas.read_sql`` and ORMs). While SQLAlchemy executes, the DB-API layer underneath
  does not report again.
- anything else PEP 249: :func:`wrap_connection`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sys
import weakref
from contextvars import ContextVar
from json.encoder import encode_basestring_ascii
from time import perf_counter_ns, time_ns

from .. import context as _ctx
from ..context import active, is_wrapped, log_once, mark, record, thread_msg_id, utc_second

# Set while a reported SQL call is in progress (including SQLAlchemy's cursor execution),
# so that a driver call made underneath it is not reported a second time.
_IN_SQL: ContextVar[bool] = ContextVar("jupyter_audit_in_sql", default=False)

STATEMENT_CAP = 100_000  # characters of a statement kept in the event
PARAM_ITEMS_CAP = 100  # parameters (or param sets of executemany) kept
PARAM_TEXT_CAP = 1_000  # characters of one parameter value kept
_SAFE_INT = 2**53
_MIN_SAFE_INT = -_SAFE_INT

# modules whose own bookkeeping connections are not user work
_IGNORED_CALLERS = ("IPython.core.history",)


# -- payload helpers ----------------------------------------------------------------------


def statement_text(statement) -> tuple[str, dict]:
    """The statement as text (capped), plus extra payload fields when it was cut."""
    if isinstance(statement, bytes | bytearray | memoryview):
        text = bytes(statement).decode("utf-8", "replace")
    elif isinstance(statement, str):
        text = statement
    else:
        text = str(statement)
    if len(text) <= STATEMENT_CAP:
        return text, {}
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    return text[:STATEMENT_CAP], {
        "statement_truncated": True,
        "statement_chars": len(text),
        "statement_sha256": digest,
    }


def jsonable(value, depth: int = 0):
    """A JSON-safe rendering of a parameter value: JSON scalars as they are (strings
    capped, integers beyond 2**53 and non-finite floats as repr), containers recursively,
    anything else as its repr (capped)."""
    if value is None or value is True or value is False:
        return value
    t = type(value)
    if t is str:
        return value if len(value) <= PARAM_TEXT_CAP else value[:PARAM_TEXT_CAP] + "…"
    if t is int:
        return value if _MIN_SAFE_INT < value < _SAFE_INT else repr(value)
    if t is float:
        return value if math.isfinite(value) else repr(value)
    if depth < 4:
        if isinstance(value, list | tuple):
            out = [jsonable(v, depth + 1) for v in value[:PARAM_ITEMS_CAP]]
            if len(value) > PARAM_ITEMS_CAP:
                out.append(f"… {len(value) - PARAM_ITEMS_CAP} more")
            return out
        if isinstance(value, dict):
            out = {}
            for i, (k, v) in enumerate(value.items()):
                if i >= PARAM_ITEMS_CAP:
                    out["…"] = f"{len(value) - PARAM_ITEMS_CAP} more"
                    break
                out[k if isinstance(k, str) else repr(k)] = jsonable(v, depth + 1)
            return out
    try:
        text = repr(value)
    except Exception:
        text = f"<{t.__name__}>"
    return text if len(text) <= PARAM_TEXT_CAP else text[:PARAM_TEXT_CAP] + "…"


def params_json(params):
    """Parameters of one statement as a JSON array/object, or None."""
    if params is None:
        return None
    t = type(params)
    if t is tuple or t is list:
        if not params:
            return []
        return jsonable(params)
    if isinstance(params, dict):
        return jsonable(params)
    try:  # other sequences / mappings (e.g. sqlite3.Row, ChainMap)
        if hasattr(params, "keys"):
            return jsonable(dict(params))
        return jsonable(list(params))
    except Exception:
        return [jsonable(params)]


class _Sampler:
    """Wraps the parameter sets of executemany: keeps the first few for the event and
    counts them all, consuming the user's iterable exactly once, lazily."""

    __slots__ = ("sample", "count")

    def __init__(self) -> None:
        self.sample: list = []
        self.count = 0

    def wrap(self, seq):
        if isinstance(seq, list | tuple):
            self.sample = list(seq[:PARAM_ITEMS_CAP])
            self.count = len(seq)
            return seq
        return self._gen(iter(seq))

    def _gen(self, it):
        for item in it:
            if self.count < PARAM_ITEMS_CAP:
                self.sample.append(item)
            self.count += 1
            yield item

    def payload(self):
        return [params_json(p) for p in self.sample]


_PW_KV = re.compile(r"(?i)\b(password|passwd|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_PW_URL = re.compile(r"(?i)^([a-z][a-z0-9+.\-]*://[^:/@\s]*):[^@/\s]*@")


def strip_password(dsn) -> str | None:
    """A DSN, URL or path with any password removed."""
    if dsn is None:
        return None
    if isinstance(dsn, bytes):
        dsn = dsn.decode("utf-8", "replace")
    else:
        try:
            dsn = os.fspath(dsn)
        except TypeError:
            dsn = str(dsn)
        if isinstance(dsn, bytes):
            dsn = dsn.decode("utf-8", "replace")
    dsn = _PW_URL.sub(r"\1@", dsn)
    return _PW_KV.sub("", dsn).strip()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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
            "error": None if error is None else _error_text(error),
        }
        if more:
            payload.update(more)
        if extra:
            payload.update(extra)
        record("op.sql", payload)
    except Exception as e:
        log_once(f"sql report ({driver})", e)


def _rowcount(cursor):
    try:
        return cursor.rowcount
    except Exception:
        return None


# -- the raw fast path --------------------------------------------------------------------
#
# A statement's hot path only writes one flat record to the transport's queue (see
# context.queue):
#   (encoder index, msg_id, op_index, end_time_ns, statement, params, start_time_ns, rowcount,
#    database, error_text)
# holding references (params: the caller's tuple, or a copy of a list/dict, so later
# mutation does not change what is reported). The encoder renders the op.sql payload from
# it on the sender thread: statement text and capping, parameter rendering, rowcount and
# duration. msg_id, op_index, times and rowcount are all taken at call time.

_ENC = json.JSONEncoder(separators=(",", ":"), default=repr)  # ASCII output
_CELL_MSG_ID = _ctx.cell_msg_id_var
_next_op_index = _ctx.op_counter.__next__
_TEXT_CACHE_MAX = 512  # statements/databases whose JSON text is kept (they repeat)
_TEXT_CACHED_LEN = 4096  # longer texts are encoded each time
_texts: dict[str, str] = {}


def _json_text(text: str) -> str:
    out = _texts.get(text)
    if out is None:
        out = encode_basestring_ascii(text)
        if len(text) <= _TEXT_CACHED_LEN:
            if len(_texts) >= _TEXT_CACHE_MAX:
                _texts.clear()
            _texts[text] = out
    return out


# A one-value tuple of an int or a str (the usual ``(id,)``) is recorded as that value:
# the tuple would be the one object a queued statement keeps for the garbage collector.
_SINGLE = frozenset({int, str})


class _Rendered:
    """Parameters rendered at call time (types that may change after the call)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def _snapshot(params):
    """Parameters other than a tuple, as they are now: lists and dicts copied (rendered
    later), anything else rendered now."""
    cls = params.__class__
    if cls is list:
        return tuple(params)
    if cls is dict:
        return dict(params)
    try:
        return _Rendered(params_json(params))
    except Exception:
        return _Rendered(None)


def _params_text(params) -> str:
    """JSON text of recorded parameters, as ``params_json`` renders them (fast for the
    usual flat tuple of ints, short strings, finite floats, None and booleans). A bare int
    or str stands for a tuple of that one value (see ``_SINGLE``)."""
    cls = params.__class__
    if cls is int or cls is str:
        params = (params,)
    if params.__class__ is tuple and len(params) <= PARAM_ITEMS_CAP:
        out = []
        for v in params:
            cls = v.__class__
            if cls is int:
                if _MIN_SAFE_INT < v < _SAFE_INT:
                    out.append(int.__repr__(v))
                    continue
            elif cls is str:
                if len(v) <= PARAM_TEXT_CAP:
                    out.append(encode_basestring_ascii(v))
                    continue
            elif cls is float:
                if math.isfinite(v):
                    out.append(float.__repr__(v))
                    continue
            elif v is None:
                out.append("null")
                continue
            elif cls is bool:
                out.append("true" if v else "false")
                continue
            return _ENC.encode(params_json(params))
        return "[" + ",".join(out) + "]"
    if params is None:
        return "null"
    if params.__class__ is _Rendered:
        return _ENC.encode(params.value)
    return _ENC.encode(params_json(params))


class RawSql:
    """Encoder of the raw tuples one driver's hot path records (see above)."""

    kind = "op.sql"
    __slots__ = ("driver", "_head")

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self._head = '{"driver":' + encode_basestring_ascii(driver) + ',"database":'

    def payload(self, item) -> dict:
        """The payload as a dict (the general path)."""
        statement, more = statement_text(item[4])
        params = item[5]
        if params is not None:
            params = json.loads(_params_text(params))
        rowcount = item[7]
        if rowcount.__class__ is not int or rowcount < 0:
            rowcount = None
        payload = {
            "driver": self.driver,
            "database": item[8],
            "statement": statement,
            "params": params,
            "rowcount": rowcount,
            "duration_us": max(0, item[3] - item[6]) // 1000,
            "error": item[9],
        }
        payload.update(more)
        return payload

    def wire_many(self, items, head, out: list) -> None:
        """Append the wire JSON text (ASCII) of each raw item to ``out``. ``head(kind,
        msg_id)`` gives the transport's fixed envelope parts (see
        ``AuditClient._head``); with them, the usual item is one f-string of parts cached
        per (msg_id, statement, database) and the values of this one call."""
        parts: dict = {}
        kind = self.kind
        cap = STATEMENT_CAP
        last_sec = -1
        second = ""
        for item in items:
            _, mid, op, t1, statement, params, t0, rowcount, database, error = item
            sec, ns = divmod(t1, 1_000_000_000)
            if sec != last_sec:
                second = utc_second(sec)
                last_sec = sec
            if statement.__class__ is not str or len(statement) > cap:
                a, b = head(kind, mid)
                out.append(
                    f'{a}{op:016x}{b}{op},"kernel_time":"{second}.{ns // 1000:06d}Z",'
                    f'"payload":{_ENC.encode(self.payload(item))}}}'
                )
                continue
            key = (mid, statement, database)
            fixed = parts.get(key)
            if fixed is None:
                a, b = head(kind, mid)
                fixed = parts[key] = (
                    a,
                    b,
                    'Z","payload":'
                    + self._head
                    + ("null" if database is None else _json_text(database))
                    + ',"statement":'
                    + _json_text(statement)
                    + ',"params":',
                )
            a, b, c = fixed
            # the usual parameters: one int or short string (recorded bare: see _SINGLE)
            if params.__class__ is int and _MIN_SAFE_INT < params < _SAFE_INT:
                p = f"[{params}]"
            elif params.__class__ is str and len(params) <= PARAM_TEXT_CAP:
                p = f"[{encode_basestring_ascii(params)}]"
            else:
                p = _params_text(params)
            if rowcount.__class__ is not int or rowcount < 0:
                rowcount = "null"
            out.append(
                f'{a}{op:016x}{b}{op},"kernel_time":"{second}.{ns // 1000:06d}{c}{p},'
                f'"rowcount":{rowcount},"duration_us":{(t1 - t0) // 1000 if t1 > t0 else 0},'
                f'"error":{"null" if error is None else encode_basestring_ascii(error)}}}}}'
            )


def _failed(encoder: int, queue, statement, params, t0: int, exc: BaseException, database) -> None:
    """The raw record of a statement that raised (not the hot path)."""
    try:
        t1 = time_ns()
        mid = _CELL_MSG_ID.get()
        if mid is None:
            mid = thread_msg_id()
        if params.__class__ is not tuple:
            params = _snapshot(params)
        try:
            error = _error_text(exc)
        except Exception:
            error = type(exc).__name__
        queue.extend(
            (encoder, mid, _next_op_index(), t1, statement, params, t0, None, database, error)
        )
        if len(queue) > _ctx.queue_limit:
            _ctx.pressure()
    except Exception as e:
        log_once("sql failed", e)


_SQLITE = _ctx.register_encoder(RawSql("sqlite3"))
_RECORDED = frozenset({tuple, int, str, _Rendered})  # forms params are recorded in


def _recover(queue, cursor, statement, params, t0: int, t1: int) -> None:
    """The record of a sqlite3 statement whose fast record failed (not the hot path)."""
    try:
        mid = _CELL_MSG_ID.get()
        if mid is None:
            mid = thread_msg_id()
        if params.__class__ not in _RECORDED:
            params = _snapshot(params)
        conn = getattr(cursor, "connection", cursor)
        database = getattr(conn, "_jupyter_audit_db", None)
        rowcount = _rowcount(cursor)
        queue.extend(
            (_SQLITE, mid, _next_op_index(), t1, statement, params, t0, rowcount, database, None)
        )
    except Exception as e:
        log_once("sqlite3 record", e)


def _should_skip() -> bool:
    return _IN_SQL.get() or not active()


# -- sqlite3 ------------------------------------------------------------------------------


class _SqliteCursorMixin:
    # no instance __dict__, as sqlite3.Cursor itself (and a smaller object to create)
    __slots__ = ()

    # the hot path: kept to the minimum (see "the raw fast path" above)
    def execute(self, sql, parameters=(), /):
        queue = _ctx.queue
        if queue is None or _IN_SQL.get():
            return super().execute(sql, parameters)
        t0 = time_ns()
        try:
            result = super().execute(sql, parameters)
        except BaseException as e:
            _failed(_SQLITE, queue, sql, parameters, t0, e, _sqlite_db(self))
            raise
        t1 = time_ns()
        try:
            mid = _CELL_MSG_ID.get()  # threads started in a cell carry it (context.py)
            if parameters.__class__ is not tuple:
                parameters = _snapshot(parameters)
            elif len(parameters) == 1 and parameters[0].__class__ in _SINGLE:
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
        if _should_skip():
            return super().executemany(sql, seq_of_parameters)
        sampler = _Sampler()
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
        if _should_skip():
            return super().executescript(sql_script)
        t0 = perf_counter_ns()
        try:
            result = super().executescript(sql_script)
        except BaseException as e:
            report("sqlite3", _sqlite_db(self), sql_script, None, None, t0, e, _SCRIPT)
            raise
        report("sqlite3", _sqlite_db(self), sql_script, None, None, t0, None, _SCRIPT)
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
        t0 = time_ns()
        try:
            _sqlite_execute(cur, sql, parameters)
        except BaseException as e:
            _failed(_SQLITE, queue, sql, parameters, t0, e, self._jupyter_audit_db)
            raise
        t1 = time_ns()
        try:
            mid = _CELL_MSG_ID.get()  # threads started in a cell carry it (context.py)
            if parameters.__class__ is not tuple:
                parameters = _snapshot(parameters)
            elif len(parameters) == 1 and parameters[0].__class__ in _SINGLE:
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


def _audited_class(cache: dict, base, mixin: type, root: type):
    """``base`` with ``mixin`` in front (cached), or ``base`` itself when it is not a
    subclass of ``root`` (a factory function we cannot subclass: passed through)."""
    if not (isinstance(base, type) and issubclass(base, root)):
        return base
    if issubclass(base, mixin):
        return base
    cls = cache.get(base)
    if cls is None:
        namespace = {"__module__": __name__}
        if "__slots__" in mixin.__dict__:
            namespace["__slots__"] = ()
        cls = type(base.__name__, (mixin, base), namespace)
        cache[base] = cls
    return cls


def _audited_sqlite_cursor(factory):
    import sqlite3

    return _audited_class(_sqlite_classes, factory, _SqliteCursorMixin, sqlite3.Cursor)


def _caller_ignored(depth: int = 2) -> bool:
    try:
        name = sys._getframe(depth).f_globals.get("__name__", "")
    except ValueError:
        return False
    return name.startswith(_IGNORED_CALLERS)


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
            audited = _audited_class(
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


# -- duckdb -------------------------------------------------------------------------------

_duck_db: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _duck_database(con) -> str | None:
    if con is None:
        return ":default:"
    try:
        return _duck_db.get(con)
    except TypeError:
        return None


def _wrap_duck(orig, name: str, many: bool = False, method: bool = True):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if _should_skip():
            return orig(*args, **kwargs)
        rest = args[1:] if method else args
        query = rest[0] if rest else kwargs.get("query")
        if many:
            params = rest[1] if len(rest) > 1 else kwargs.get("parameters")
            sampler = _Sampler()
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
        con = args[0] if method else kwargs.get("connection")
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
            if many:
                p = sampler.payload()
                extra = {"executemany": True, "param_sets": sampler.count, "call": name}
            else:
                p = params_json(params)
                extra = {"call": name}
            report("duckdb", _duck_database(con), query, p, None, t0, err, extra)

    return mark(wrapper)


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


# -- psycopg 3 ----------------------------------------------------------------------------

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


def _wrap_psycopg(orig, *, many=False, is_async=False):
    def prepare(self, args, kwargs):
        query = args[0] if args else kwargs.get("query")
        sampler = None
        if many:
            sampler = _Sampler()
            if len(args) > 1:
                args = (args[0], sampler.wrap(args[1])) + args[2:]
            elif "params_seq" in kwargs:
                kwargs["params_seq"] = sampler.wrap(kwargs["params_seq"])
            params = None
        else:
            params = args[1] if len(args) > 1 else kwargs.get("params")
        return query, params, sampler, args, kwargs

    def finish(self, query, params, sampler, t0, err):
        if sampler is not None:
            p = sampler.payload()
            extra = {"executemany": True, "param_sets": sampler.count}
        else:
            p = params_json(params)
            extra = None
        rc = None if err is not None else _rowcount(self)
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
            if _should_skip():
                return await orig(self, *args, **kwargs)
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
                finish(self, query, params, sampler, t0, err)

    else:

        @functools.wraps(orig)
        def wrapper(self, *args, **kwargs):
            if _should_skip():
                return orig(self, *args, **kwargs)
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
                finish(self, query, params, sampler, t0, err)

    return mark(wrapper)


class _AuditedCopy:
    """Context manager around psycopg's ``Cursor.copy``: one event when the block ends."""

    def __init__(self, cm, cursor, statement, params):
        self._cm, self._cursor, self._statement, self._params = cm, cursor, statement, params
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
            rc = None if ev is not None else _rowcount(self._cursor)
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
            cm = orig_copy(self, statement, params, **kwargs)
            if _should_skip():
                return cm
            return _AuditedCopy(cm, self, statement, params)

        patcher.replace(cls, "copy", mark(copy))


# -- psycopg2 -----------------------------------------------------------------------------

_pg2_classes: dict[type, type] = {}


class _Pg2CursorMixin:
    def execute(self, query, vars=None):
        if _should_skip():
            return super().execute(query, vars)
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
            rc = None if err is not None else _rowcount(self)
            report("psycopg2", _pg2_db(self), _pg2_text(query), params_json(vars), rc, t0, err)

    def executemany(self, query, vars_list):
        if _should_skip():
            return super().executemany(query, vars_list)
        sampler = _Sampler()
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
            rc = None if err is not None else _rowcount(self)
            report(
                "psycopg2",
                _pg2_db(self),
                _pg2_text(query),
                sampler.payload(),
                rc,
                t0,
                err,
                {"executemany": True, "param_sets": sampler.count},
            )

    def callproc(self, procname, parameters=None):
        if _should_skip():
            return super().callproc(procname, parameters)
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


def _pg2_text(query):
    if isinstance(query, str | bytes):
        return query
    try:
        return str(query)  # psycopg2.sql.Composed needs a connection to render; repr is enough
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
        kwargs["cursor_factory"] = _audited_class(
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

                connection_factory = _audited_class(
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


# -- SQLAlchemy ---------------------------------------------------------------------------

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
    state = (perf_counter_ns(), _IN_SQL.set(True))
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
    _sa_report(conn, statement, parameters, executemany, state[0], _rowcount(cursor), None)


def _sa_error(exception_context):
    ctx = exception_context.execution_context
    state = _sa_take(ctx)
    if state is None or exception_context.statement is None:
        return
    conn = exception_context.connection or exception_context.engine
    err = exception_context.original_exception or exception_context.sqlalchemy_exception
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
    patcher.defer(lambda: [event.remove(Engine, n, f) for n, f in listeners])


# -- generic PEP 249 ----------------------------------------------------------------------


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
        if _should_skip():
            return cur.execute(operation, *args, **kwargs)
        params = args[0] if args else kwargs.get("parameters", kwargs.get("params"))
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
            rc = None if err is not None else _rowcount(cur if result is cur else result)
            report(
                self._jad_driver, self._jad_database, operation, params_json(params), rc, t0, err
            )

    def executemany(self, operation, seq_of_parameters, *args, **kwargs):
        cur = self._jad_cursor
        if _should_skip():
            return cur.executemany(operation, seq_of_parameters, *args, **kwargs)
        sampler = _Sampler()
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
            rc = None if err is not None else _rowcount(cur if result is cur else result)
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


# -- installation -------------------------------------------------------------------------


def install(hooks, patcher) -> None:
    hooks.register("sqlite3", lambda m: patch_sqlite3(m, patcher))
    hooks.register("duckdb", lambda m: patch_duckdb(m, patcher))
    hooks.register("psycopg", lambda m: patch_psycopg(m, patcher))
    hooks.register("psycopg2", lambda m: patch_psycopg2(m, patcher))
    hooks.register("sqlalchemy", lambda m: patch_sqlalchemy(m, patcher))
