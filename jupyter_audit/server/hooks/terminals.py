"""Jupyter terminals: the command lines a server terminal's shell runs become `op.shell`
events, recorded with the identity of the person typing, so a terminal is not a way
around the trail. Output is not recorded.

Shell hook (bash). A terminal the server starts with bash gets `PROMPT_COMMAND` in its
environment, sourcing a hook file from a directory the server creates (0700); nothing in
the user's dotfiles changes, and ~/.bashrc (or the login files) is read as usual, before
the first prompt runs the hook. At every prompt the hook forces `HISTCONTROL=` and
`HISTIGNORE=` (so every command line enters history; the user's history file keeps
duplicates and space-prefixed lines), installs `PS0`, and reports itself alive; `PS0` is
expanded after bash has read a command line and before it runs it, and reports
`history 1`: the line exactly as bash will execute it, after history recall (Up-arrow),
line editing (Ctrl-W, cursor moves), completion and `!` expansion. Reports travel in the
terminal's own output as a private OSC sequence, `ESC ] 6973 ; <kind> [; base64] BEL`
(kinds: `c` the line about to run, `p` the prompt, `x` the hook is broken: PS0 was
changed); the server takes them out of the pty output (also when split across reads),
so neither the browser nor a reconnecting client's replay buffer ever sees them. Such a
record has `source: "shell"`.

Fallback, flagged. Other shells (sh, zsh, fish: no hook yet) and bash whose hook is gone
(`PS0` changed or unset, both `PS0` and `PROMPT_COMMAND` unset, a nested `exec sh`) are
recorded as before: keystrokes reassembled at Enter, with backspace, Ctrl-C and Ctrl-U
applied and escape sequences dropped, so the text may differ from what ran. Such records
have `source: "keystrokes"` and `flags: ["reassembled"]`. While a terminal is hooked (from
its start, for bash; again after any report), a line typed is held, not recorded; the
shell's next command report records what ran and drops every held line (pasted lines,
type-ahead: each is reported by the shell in turn). A terminal whose shell reports
nothing at all for REPORT_TIMEOUT (STARTUP_TIMEOUT before its first report) after a line
is typed is taken to be unhooked: the held lines are recorded flagged, and so is every
later line until the hook reports again. With `PROMPT_COMMAND` alone unset, PS0 still
reports; a report whose history number did not advance (history off, `HISTCONTROL`
changed) is not trusted: the held lines are recorded flagged instead.
Limits: input to a program (`cat`, `python`) is recorded flagged only if the program runs
longer than REPORT_TIMEOUT, else dropped when the next command is reported; a line typed
ahead while a command runs longer than REPORT_TIMEOUT is recorded twice (once flagged).

Forgery. Anything that writes to the terminal (`printf '\\e]6973;c;...\\a'`, `cat` of a
crafted file) can produce a report. It only adds a record under the identity of whoever
typed last in that terminal, which that person could have produced by typing; a report
that is not in the hook's format (`history 1` output) is recorded flagged `malformed`.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import json
import logging
import os
import re
import shlex
import shutil
import tempfile

from ...identity.resolve import snapshot_for
from .. import sockets

log = logging.getLogger("jupyter_audit.terminals")
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)")
MAX_LINE = 64 * 1024
MAX_PENDING = 64  # typed lines held for the shell's report, per terminal
OSC = "\x1b]6973;"
MAX_SEQUENCE = 8 * MAX_LINE  # base64 of a MAX_LINE command and then some
_HISTORY_LINE = re.compile(r"\A\s*(\d+)[ *] (.*?)\n?\Z", re.S)
REPORT_TIMEOUT = 10.0  # seconds a hooked shell has to report a typed line
STARTUP_TIMEOUT = 30.0  # the same for lines typed before a new shell's first report

BASH_HOOK = r"""# jupyter-audit: reports each command line this bash is about to run to the Jupyter
# server that started the terminal, as a private escape sequence in the terminal's
# output (the server takes it out). Sourced by PROMPT_COMMAND at every prompt.
__jupyter_audit_rc=$?
if ! declare -F __jupyter_audit_ps0 >/dev/null && command -v base64 >/dev/null; then
  __jupyter_audit_ps0() {
    local HISTTIMEFORMAT=
    printf '\033]6973;c;%s\007' "$(builtin history 1 | base64 | tr -d '\n')"
  }
  PS0='$(__jupyter_audit_ps0)'"${PS0-}"
fi
HISTCONTROL= HISTIGNORE=
case ${PS0-} in
  *'$(__jupyter_audit_ps0)'*)
    printf '\033]6973;p;%s\007' "$(HISTTIMEFORMAT= builtin history 1 | base64 | tr -d '\n')" ;;
  *) printf '\033]6973;x\007' ;;
esac
return $__jupyter_audit_rc
"""

_hook_dir: str | None = None


def hook_env(argv) -> dict:
    """Environment that hooks a terminal running `argv`, or {} for a shell without one."""
    global _hook_dir
    if not argv:
        return {}
    exe = shutil.which(str(argv[0])) or str(argv[0])
    if os.path.basename(os.path.realpath(exe)) != "bash":
        return {}
    if _hook_dir is None or not os.path.isdir(_hook_dir):
        _hook_dir = tempfile.mkdtemp(prefix="jupyter-audit-term-")  # 0700
        with open(os.path.join(_hook_dir, "hook.bash"), "w", encoding="utf-8") as f:
            f.write(BASH_HOOK)
        atexit.register(shutil.rmtree, _hook_dir, True)
    path = os.path.join(_hook_dir, "hook.bash")
    return {"PROMPT_COMMAND": f". {shlex.quote(path)}", "HISTCONTROL": "", "HISTIGNORE": ""}


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


def _b64(text: str) -> str | None:
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "replace")


class TerminalAudit:
    """One terminal's reports: takes the hook's sequences out of the pty output and
    decides, line by line, whether the shell or the reassembled keystrokes are recorded."""

    def __init__(self, name: str = "unknown", hooked: bool = False):
        self.name = name
        self.hooked = hooked  # the shell reports what it runs
        self.pending: list[tuple[str, dict]] = []  # typed lines awaiting the shell's report
        self.recorder = None
        self.identity: dict | None = None  # of whoever typed the last line
        self.last_number = -1  # history number of the last report
        self.reports = 0  # reports seen so far
        self._carry = ""  # a sequence (or its beginning) split across reads
        self._discarding = False  # inside an oversized sequence

    # -- pty output ---------------------------------------------------------------
    def output(self, text: str) -> str:
        """`text` read from the pty without the hook's sequences; records what they say."""
        text, self._carry = self._carry + text, ""
        out = []
        i = 0
        if self._discarding:
            end = re.compile(r"\x07|\x1b\\").search(text)
            if end is None:
                return ""
            self._discarding, i = False, end.end()
        while True:
            j = text.find(OSC, i)
            if j < 0:
                rest = text[i:]
                keep = next(
                    (
                        k
                        for k in range(min(len(OSC) - 1, len(rest)), 0, -1)
                        if rest.endswith(OSC[:k])
                    ),
                    0,
                )
                out.append(rest[: len(rest) - keep])
                self._carry = rest[len(rest) - keep :]
                break
            out.append(text[i:j])
            start = j + len(OSC)
            end = re.compile(r"[\x07\x1b]").search(text, start)
            if end is None or (end.group() == "\x1b" and end.end() == len(text)):
                if len(text) - j > MAX_SEQUENCE:
                    log.warning("jupyter-audit: terminal %s: oversized report dropped", self.name)
                    self._discarding = end is None
                    break
                self._carry = text[j:]
                break
            stop = end.end()
            if end.group() == "\x1b":
                if text[stop] == "\\":
                    stop += 1
                else:  # another escape sequence begins: this one was cut short
                    stop = end.start()
            self._report(text[start : end.start()])
            i = stop
        return "".join(out)

    def _report(self, body: str) -> None:
        kind, _, arg = body.partition(";")
        self.reports += 1
        try:
            if kind == "c":
                self._command(arg)
            elif kind == "p":
                self.hooked = True
                line = _b64(arg) or ""
                m = _HISTORY_LINE.match(line)
                if m:
                    self.last_number = max(self.last_number, int(m.group(1)))
            elif kind == "x":
                self._flush()
                self.hooked = False
            else:
                self._malformed(body)
        except Exception as e:  # noqa: BLE001 - output must reach the browser regardless
            log.error("jupyter-audit: terminal report not recorded: %s", type(e).__name__)

    def _command(self, arg: str) -> None:
        line = _b64(arg)
        m = _HISTORY_LINE.match(line) if line is not None else None
        if m is None:
            self._malformed(line if line is not None else arg)
            return
        number = int(m.group(1))
        if number <= self.last_number:  # not entered in history: history 1 is stale
            self._flush()
            return
        self.last_number = number
        identity = self.pending[0][1] if self.pending else self.identity
        self.pending.clear()
        self.hooked = True
        self._record(m.group(2), identity, source="shell")

    def _malformed(self, text: str) -> None:
        self._record(text, self.identity, source="shell", flags=["malformed"])

    def eof(self) -> None:
        self._flush()

    # -- keystrokes -----------------------------------------------------------------
    def typed(self, line: str, identity: dict, recorder) -> None:
        """A line reassembled from keystrokes at Enter."""
        self.recorder, self.identity = recorder, identity
        if not self.hooked:
            self._record(line, identity, source="keystrokes", flags=["reassembled"])
            return
        self.pending.append((line, identity))
        if len(self.pending) > MAX_PENDING:
            self._record(*self.pending.pop(0), source="keystrokes", flags=["reassembled"])
        self._expect_report()

    def _expect_report(self) -> None:
        """A hooked shell reports a line soon after it is typed, unless the hook is gone
        (or a program, not the shell, reads the line): when nothing at all is reported
        for REPORT_TIMEOUT, the held lines are recorded flagged, and the terminal falls
        back to keystrokes until the hook reports again."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        reports = self.reports

        def check():
            if self.reports == reports and self.pending:
                self._flush()
                self.hooked = False

        loop.call_later(REPORT_TIMEOUT if reports else STARTUP_TIMEOUT, check)

    def _flush(self) -> None:
        held, self.pending = self.pending, []
        for line, identity in held:
            self._record(line, identity, source="keystrokes", flags=["reassembled"])

    def _record(self, command: str, identity, *, source: str, flags=()) -> None:
        if self.recorder is None or identity is None:
            log.warning("jupyter-audit: terminal %s: report before any input, dropped", self.name)
            return
        event = {
            "kind": "op.shell",
            "identity": identity,
            "trace_id": f"terminal-{self.name}",
            "payload": {
                "command": command[:MAX_LINE],
                "exit_code": None,
                "via": "terminal",
                "terminal": self.name,
                "source": source,
            },
        }
        if flags:
            event["flags"] = list(flags)
        self.recorder.record(event)


def _audit_of(term) -> TerminalAudit:
    audit = getattr(term, "_jupyter_audit", None)
    if audit is None:  # a terminal not started through TerminalManager.new_terminal
        audit = term._jupyter_audit = TerminalAudit()
    name = getattr(term, "term_name", None)
    if name:
        audit.name = str(name)
    return audit


def _hook_terminal(term, hooked: bool) -> None:
    """Reads from `term`'s pty go through its TerminalAudit."""
    audit = term._jupyter_audit = TerminalAudit(hooked=hooked)
    read = term.ptyproc.read

    def audited_read(*args, **kwargs):
        _audit_of(term)
        try:
            text = read(*args, **kwargs)
        except EOFError:
            audit.eof()
            raise
        try:
            return audit.output(text)
        except Exception as e:  # noqa: BLE001 - output must reach the browser regardless
            log.error("jupyter-audit: terminal output not parsed: %s", type(e).__name__)
            return text

    term.ptyproc.read = audited_read


def install() -> bool:
    try:
        from jupyter_server_terminals.handlers import TermSocket
        from jupyter_server_terminals.terminalmanager import TerminalManager
    except ImportError:
        return False
    if getattr(TermSocket, "_jupyter_audit", False):
        return True
    original = TermSocket.on_message
    original_open, original_on_close = TermSocket.open, TermSocket.on_close
    new_terminal = TerminalManager.new_terminal

    def audited_new_terminal(self, **kwargs):
        argv = kwargs.get("shell_command") or self.shell_command
        env = hook_env(argv)
        if env:
            kwargs["extra_env"] = {**(kwargs.get("extra_env") or {}), **env}
        term = new_terminal(self, **kwargs)
        try:
            _hook_terminal(term, hooked=bool(env))
        except Exception as e:  # noqa: BLE001 - the terminal works regardless
            log.error("jupyter-audit: terminal output not hooked: %s", type(e).__name__)
        return term

    async def on_message(self, message):
        recorder = self.settings.get("jupyter_audit")
        if recorder is not None and not self.authorizer.allows(
            self, self.current_user, "audit:cells"
        ):
            # e.g. the service token behind this terminal was revoked or has expired
            self.close(4001, "not authorized any more")
            return None
        try:
            _record(self, message)
        except Exception as e:  # noqa: BLE001 - typing must reach the shell regardless
            log.error("jupyter-audit: terminal input not recorded: %s", type(e).__name__)
        return await original(self, message)

    def watched_open(self, *args, **kwargs):
        # closed when its token is revoked, its sign-in session ends or either expires
        sockets.watch(self, self.settings.get("jupyter_audit"))
        return original_open(self, *args, **kwargs)

    def watched_on_close(self):
        sockets.unwatch(self, self.settings.get("jupyter_audit"))
        return original_on_close(self)

    TerminalManager.new_terminal = audited_new_terminal  # type: ignore[method-assign]
    TermSocket.on_message = on_message  # type: ignore[method-assign]
    TermSocket.open = watched_open  # type: ignore[method-assign]
    TermSocket.on_close = watched_on_close  # type: ignore[method-assign]
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
    if not lines or handler.terminal is None:
        return
    identity = snapshot_for(handler.current_user, handler.identity_provider)
    audit = _audit_of(handler.terminal)
    if audit.name == "unknown":
        audit.name = str(getattr(handler, "term_name", "") or "unknown")
    for line in lines:
        audit.typed(line, identity, recorder)
