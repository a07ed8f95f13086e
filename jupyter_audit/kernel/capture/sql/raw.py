"""The raw fast path's flat record and :class:`RawSql`, which renders it on the sender thread.
Never on the per-statement path of a statement that succeeded; never raises into it."""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from time import time_ns

from ... import context as _ctx
from ...context import log_once, thread_msg_id, utc_second
from .encoding import (
    MIN_SAFE_INT,
    PARAM_ITEMS_CAP,
    PARAM_TEXT_CAP,
    SAFE_INT,
    STATEMENT_CAP,
    error_text,
    params_json,
    statement_text,
)

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
SINGLE = frozenset({int, str})


class Rendered:
    """Parameters rendered at call time (types that may change after the call)."""

    __slots__ = ("value",)

    def __init__(self, value) -> None:
        self.value = value


def snapshot(params):
    """Parameters other than a tuple, as they are now: lists and dicts copied (rendered
    later), anything else rendered now."""
    cls = params.__class__
    if cls is list:
        return tuple(params)
    if cls is dict:
        return dict(params)
    try:
        return Rendered(params_json(params))
    except Exception:
        return Rendered(None)


def _params_text(params) -> str:
    """JSON text of recorded parameters, as ``params_json`` renders them (fast for the
    usual flat tuple of ints, short strings, finite floats, None and booleans). A bare int
    or str stands for a tuple of that one value (see ``SINGLE``)."""
    cls = params.__class__
    if cls is int or cls is str:
        params = (params,)
    if params.__class__ is tuple and len(params) <= PARAM_ITEMS_CAP:
        out = []
        for v in params:
            cls = v.__class__
            if cls is int:
                if MIN_SAFE_INT < v < SAFE_INT:
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
    if params.__class__ is Rendered:
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
            # the usual parameters: one int or short string (recorded bare: see SINGLE)
            if params.__class__ is int and MIN_SAFE_INT < params < SAFE_INT:
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


def failed(encoder: int, queue, statement, params, t0: int, exc: BaseException, database) -> None:
    """The raw record of a statement that raised (not the hot path)."""
    try:
        t1 = time_ns()
        mid = _CELL_MSG_ID.get()
        if mid is None:
            mid = thread_msg_id()
        if params.__class__ is not tuple:
            params = snapshot(params)
        try:
            error = error_text(exc)
        except Exception:
            error = type(exc).__name__
        queue.extend(
            (encoder, mid, _next_op_index(), t1, statement, params, t0, None, database, error)
        )
        if len(queue) > _ctx.queue_limit:
            _ctx.pressure()
    except Exception as e:
        log_once("sql failed", e)
