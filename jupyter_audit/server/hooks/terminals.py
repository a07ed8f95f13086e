"""Jupyter terminals: what a person types into a server terminal becomes `op.shell` lines,
recorded with the terminal user's identity, so a terminal is not a way around the trail.

Best effort: keystrokes are reassembled into a line at Enter, with backspace applied and
escape sequences (arrow keys, history recall, completion) dropped, so a line edited with
them may differ from what the shell ran. Output is not recorded.
"""

from __future__ import annotations

import json
import logging
import re

from ...identity.resolve import snapshot_for

log = logging.getLogger("jupyter_audit.terminals")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)")
MAX_LINE = 64 * 1024


def _lines(handler, data: str) -> list[str]:
    buf = getattr(handler, "_audit_line", "")
    out = []
    for ch in _ESCAPES.sub("", data):
        if ch in "\r\n":
            if buf.strip():
                out.append(buf)
            buf = ""
        elif ch in "\x7f\b":
            buf = buf[:-1]
        elif ch == "\x03" or ch == "\x15":  # Ctrl-C, Ctrl-U: the line is discarded
            buf = ""
        elif ch >= " " or ch == "\t":
            buf += ch
    handler._audit_line = buf[-MAX_LINE:]
    return out


def install() -> bool:
    try:
        from jupyter_server_terminals.handlers import TermSocket
    except ImportError:
        return False
    if getattr(TermSocket, "_jupyter_audit", False):
        return True
    original = TermSocket.on_message

    async def on_message(self, message):
        recorder = self.settings.get("jupyter_audit")
        if recorder is not None and not self.authorizer.allows(
            self, self.current_user, "audit:cells"
        ):
            # e.g. the service token behind this terminal was revoked or has expired
            self.close(4001, "not authorized any more")
            return None
        if recorder is not None and not getattr(self, "_audit_registered", False):
            token_id = getattr(self.current_user, "audit_identity", None) or {}
            token_id = token_id.get("token_id")
            if token_id:  # closed at once if the token is revoked
                recorder.watch_token(token_id, self)
            self._audit_registered = True
        try:
            _record(self, message)
        except Exception as e:  # noqa: BLE001 - typing must reach the shell regardless
            log.error("jupyter-audit: terminal input not recorded: %s", type(e).__name__)
        return await original(self, message)

    TermSocket.on_message = on_message  # type: ignore[method-assign]
    setattr(TermSocket, "_jupyter_audit", True)  # noqa: B010 - marks the class as wrapped
    return True


def _record(handler, message) -> None:
    recorder = handler.settings.get("jupyter_audit")
    if recorder is None:
        return
    msg = json.loads(message)
    if not isinstance(msg, list) or len(msg) < 2 or msg[0] != "stdin":
        return
    lines = _lines(handler, str(msg[1]))
    if not lines:
        return
    identity = snapshot_for(handler.current_user, handler.identity_provider)
    name = str(getattr(handler, "term_name", "") or "unknown")
    for line in lines:
        recorder.record(
            {
                "kind": "op.shell",
                "identity": identity,
                "trace_id": f"terminal-{name}",
                "payload": {
                    "command": line,
                    "exit_code": None,
                    "via": "terminal",
                    "terminal": name,
                },
            }
        )
