"""Egress no capture path saw: network connections and process starts made during a cell
outside every captured operation, reported as ``op.uncaptured`` (what, destination host and
port or program; the server masks them and flags the event ``capture_gap``).

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Python's audit hooks (PEP 578) see ``socket.connect`` and the ``os`` functions that
start programs (``os.exec*``, ``os.spawn*``, ``os.posix_spawn``, ``os.fork``) whatever
library calls them. What the other capture paths account for is left out: connections
inside a captured HTTP call or SQL statement, processes started through ``subprocess`` or
``os.system`` (the shell capture reports those), the kernel side's own transport. Each
destination is reported once per cell. A C extension with sockets of its own (libpq, ZMQ)
raises no audit event: the trail cannot see those, and says so in docs/threat-model.md.

An audit hook cannot be removed: it is added once per process and does nothing while the
capture is off. It costs a function call and a set lookup per audit event; the SQL and
lookup hot paths raise none.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from ..context import active, current_msg_id, log_once, record

SPAWNS = frozenset({"os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty"})
WATCHED = SPAWNS | {"socket.connect"}
# the module whose process starts the shell capture reports (subprocess.Popen, which
# asyncio's subprocesses use too; os.system raises an event of its own, not watched)
_CAPTURED_SPAWNERS = frozenset({"subprocess"})
_MARK = "_jupyter_audit_egress"  # on `sys`: one hook per process, whichever copy added it


class _State:
    __slots__ = ("on", "ignore", "seen_cell", "seen", "guards")

    def __init__(self) -> None:
        self.on = False
        self.ignore: frozenset = frozenset()  # (host, port) of the kernel side's transport
        self.seen_cell: str | None = None
        self.seen: set = set()
        self.guards: list[ContextVar[Any]] = []


def install(ingest_url: str | None, guards: list[ContextVar[Any]]) -> None:
    """Start reporting (adding the process's hook the first time)."""
    state = getattr(sys, _MARK, None)
    if state is None:
        state = _State()
        sys.addaudithook(_make_hook(state))
        setattr(sys, _MARK, state)
    state.guards = list(guards)
    state.ignore = frozenset(_endpoint(ingest_url))
    state.on = True


def uninstall() -> None:
    state = getattr(sys, _MARK, None)
    if state is not None:
        state.on = False


def _endpoint(url: str | None) -> set:
    if not url:
        return set()
    from urllib.parse import urlsplit

    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    loopback = {"localhost", "127.0.0.1", "::1"}
    hosts = loopback if u.hostname in loopback else {u.hostname or ""}
    return {(h, port) for h in hosts}


def _make_hook(state: _State):
    watched = WATCHED

    def hook(event: str, args: tuple) -> None:
        if event not in watched or not state.on:
            return
        try:
            _seen(state, event, args)
        except Exception as e:  # noqa: BLE001 - a hook must never break the code it watches
            log_once("egress", e)

    return hook


def _seen(state: _State, event: str, args: tuple) -> None:
    if not active():
        return
    msg_id = current_msg_id()
    if msg_id is None:
        return  # not on behalf of a cell (the kernel itself, its transport thread)
    if any(guard.get() for guard in state.guards):
        return  # inside a captured HTTP call or SQL statement
    if event == "socket.connect":
        payload = _connection(args)
        if payload is None or (payload["host"], payload["port"]) in state.ignore:
            return
    else:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        if caller in _CAPTURED_SPAWNERS:
            return  # subprocess.Popen: the shell capture reports it
        payload = _process(event, args)
    key = tuple(sorted(payload.items()))
    if state.seen_cell != msg_id:
        state.seen_cell, state.seen = msg_id, set()
    if key in state.seen:
        return  # once per cell and destination
    state.seen.add(key)
    record("op.uncaptured", payload, msg_id)


def _connection(args: tuple) -> dict | None:
    sock, address = args[0], args[1]
    family = getattr(getattr(sock, "family", None), "name", str(getattr(sock, "family", "")))
    if isinstance(address, tuple) and len(address) >= 2:
        return {
            "what": "socket.connect",
            "host": str(address[0]),
            "port": int(address[1]) if isinstance(address[1], int) else None,
            "family": family,
        }
    if isinstance(address, str | bytes):  # a Unix socket: its path
        path = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
        return {"what": "socket.connect", "host": path, "port": None, "family": family}
    return None


def _process(event: str, args: tuple) -> dict:
    program = None
    if event in ("os.exec", "os.spawn", "os.posix_spawn") and args:
        first = args[1] if event == "os.spawn" and len(args) > 1 else args[0]
        program = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
    return {"what": event, "host": program, "port": None, "family": None}
