"""Jupyter terminals: the command lines bash runs land in the trail as op.shell; other
shells, and bash without the hook, as reassembled keystrokes, flagged."""

import asyncio
import getpass
import json

import pytest
from helpers.trail import trail_events, wait_for

from jupyter_audit.server.hooks.terminals import _lines


@pytest.fixture
def terminal_shell():
    """The shell the server starts: bash, whatever $SHELL says (CI may leave it unset,
    and jupyter_server_terminals then starts sh)."""
    return ["bash"]


@pytest.fixture
def jp_server_config(trail_dir, terminal_shell):
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_audit": True, "jupyter_server_terminals": True},
            "terminado_settings": {"shell_command": terminal_shell},
        },
        "AuditApp": {"db_path": str(trail_dir / "trail.duckdb")},
    }


async def test_terminal_input_is_recorded(jp_serverapp, jp_fetch, jp_ws_fetch):
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    r = await jp_fetch("api", "terminals", method="POST", body="{}")
    name = json.loads(r.body)["name"]
    ws = await jp_ws_fetch("terminals", "websocket", name)
    ws.write_message(json.dumps(["stdin", "echo hel"]))
    ws.write_message(json.dumps(["stdin", "lo\r"]))
    ws.write_message(json.dumps(["stdin", "rm -rf scratchx\x7f\r"]))
    events = await wait_for(audit, lambda ev: sum(e["kind"] == "op.shell" for e in ev) >= 2)
    shell = [e for e in events if e["kind"] == "op.shell"]
    assert [e["payload"]["command"] for e in shell] == ["echo hello", "rm -rf scratch"]
    assert all(e["identity"]["username"] == getpass.getuser() for e in shell)
    assert shell[0]["trace_id"] == f"terminal-{name}" and shell[0]["payload"]["via"] == "terminal"
    ws.close()
    await asyncio.sleep(0)
    assert len(trail_events(audit)) >= 2


def test_line_reassembly():
    class H:
        pass

    h = H()
    assert _lines(h, "ls -l") == []
    assert _lines(h, "a\x1b[D\x1b[Cb\r") == ["ls -lab"]
    assert _lines(h, "oops\x03whoami\n") == ["whoami"]


async def test_a_revoked_service_token_closes_its_terminal(jp_serverapp, jp_fetch, jp_ws_fetch):
    made = json.loads(
        (
            await jp_fetch(
                "jupyter-audit",
                "api",
                "tokens",
                method="POST",
                body=json.dumps({"service_account": "ops-bot", "owner": "ada@example.org"}),
            )
        ).body
    )
    h = {"Authorization": f"token {made['token']}"}
    r = await jp_fetch("api", "terminals", method="POST", body="{}", headers=h)
    ws = await jp_ws_fetch("terminals", "websocket", json.loads(r.body)["name"], headers=h)
    ws.write_message(json.dumps(["stdin", "echo as-bot\r"]))
    audit = jp_serverapp.web_app.settings["jupyter_audit"]
    events = await wait_for(audit, lambda ev: any(e["kind"] == "op.shell" for e in ev))
    shell = next(e for e in events if e["kind"] == "op.shell")
    assert shell["identity"]["username"] == "ops-bot"
    await jp_fetch("jupyter-audit", "api", "tokens", made["id"], method="DELETE")

    async def until_closed():
        while await ws.read_message() is not None:
            pass

    await asyncio.wait_for(until_closed(), 10)


# -- the shell hook: what bash ran, not the keystrokes -----------------------------------


class Terminal:
    """A real terminal through the server's websocket; keeps every stdout message."""

    def __init__(self, audit, ws):
        self.audit, self.ws, self.stdout = audit, ws, []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        while (msg := await self.ws.read_message()) is not None:
            msg = json.loads(msg)
            if msg[0] == "stdout":
                self.stdout.append(msg[1])

    def shell(self, events):
        return [e for e in events if e["kind"] == "op.shell"]

    async def type(self, keys, expect=1):
        """Types `keys`; waits until `expect` more op.shell events are in the trail."""
        before = len(self.shell(trail_events(self.audit)))
        self.ws.write_message(json.dumps(["stdin", keys]))
        events = await wait_for(self.audit, lambda ev: len(self.shell(ev)) >= before + expect)
        return self.shell(events)[before:]

    async def output_contains(self, text, timeout=60):
        async def seen():
            while text not in "".join(self.stdout):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(seen(), timeout)

    def close(self):
        self.ws.close()
        self.reader.cancel()


@pytest.fixture
def open_terminal(jp_serverapp, jp_fetch, jp_ws_fetch):
    opened = []

    async def open_():
        r = await jp_fetch("api", "terminals", method="POST", body="{}")
        name = json.loads(r.body)["name"]
        ws = await jp_ws_fetch("terminals", "websocket", name)
        t = Terminal(jp_serverapp.web_app.settings["jupyter_audit"], ws)
        t.name = name
        opened.append(t)
        return t

    yield open_
    for t in opened:
        t.close()


def _commands(events):
    return [
        (e["payload"]["command"], e["payload"]["source"], e.get("flags") or None) for e in events
    ]


async def test_up_arrow_rerun_is_recorded_as_the_shell_ran_it(open_terminal):
    terminal = await open_terminal()
    assert _commands(await terminal.type("echo once-$((1+1))\r")) == [
        ("echo once-$((1+1))", "shell", None)
    ]
    await terminal.output_contains("once-2")
    # Up-arrow + Enter: no text typed at all, and the same line again
    assert _commands(await terminal.type("\x1b[A\r")) == [("echo once-$((1+1))", "shell", None)]
    assert _commands(await terminal.type("\x1b[A\x1b[A\r")) == [
        ("echo once-$((1+1))", "shell", None)
    ]


async def test_line_editing_records_what_bash_executed(open_terminal):
    terminal = await open_terminal()
    edits = [
        ("echo abc def\x17xyz\r", "echo abc xyz"),  # Ctrl-W
        ("echo wrld" + "\x1b[D" * 3 + "o\r", "echo world"),  # cursor left, insert
        ("cho edited\x01e\r", "echo edited"),  # Ctrl-A, insert
        ("echo comp\x1b[1;5Dre\r", "echo recomp"),  # Ctrl-Left (word back)
    ]
    for keys, ran in edits:
        events = await terminal.type(keys)
        assert _commands(events) == [(ran, "shell", None)]
        assert events[0]["trace_id"] == f"terminal-{terminal.name}"
        assert events[0]["identity"]["username"] == getpass.getuser()
    await terminal.output_contains("recomp")


async def test_the_hooks_sequences_never_reach_the_browser(open_terminal, jp_ws_fetch):
    terminal = await open_terminal()
    await terminal.type("echo seen-$((40+2))\r")
    await terminal.output_contains("seen-42")
    await terminal.type("printf 'x%.0s' {1..3}; echo\r")
    await terminal.output_contains("xxx")
    assert "\x1b]6973" not in "".join(terminal.stdout)
    # a second client gets the replay buffer: clean as well
    ws = await jp_ws_fetch("terminals", "websocket", terminal.name)
    replay = ""
    while "seen-42" not in replay or "xxx" not in replay:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        replay += msg[1] if msg[0] == "stdout" else ""
    assert "\x1b]6973" not in replay
    ws.close()


async def test_without_the_hook_lines_are_reassembled_and_flagged(open_terminal):
    terminal = await open_terminal()
    assert _commands(await terminal.type("PS0=\r")) == [("PS0=", "shell", None)]
    await terminal.output_contains("PS0=")
    events = await terminal.type("echo after\x1b[D\x1b[Dx\r")  # shell ran: echo aftxer
    assert _commands(events) == [("echo afterx", "keystrokes", ["reassembled"])]
    await terminal.output_contains("aftxer")
    events = await terminal.type("echo again\r")
    assert _commands(events) == [("echo again", "keystrokes", ["reassembled"])]


async def test_a_hook_removed_altogether_falls_back_to_keystrokes(open_terminal, monkeypatch):
    from jupyter_audit.server.hooks import terminals

    monkeypatch.setattr(terminals, "REPORT_TIMEOUT", 1.0)
    terminal = await open_terminal()
    assert _commands(await terminal.type("unset PS0 PROMPT_COMMAND\r")) == [
        ("unset PS0 PROMPT_COMMAND", "shell", None)
    ]
    # nothing reported for REPORT_TIMEOUT: the line typed is recorded flagged, and so is
    # every later line, at once
    events = await terminal.type("echo one\r")
    assert _commands(events) == [("echo one", "keystrokes", ["reassembled"])]
    assert _commands(await terminal.type("echo two\r")) == [
        ("echo two", "keystrokes", ["reassembled"])
    ]


async def test_unset_prompt_command_alone_still_reports_through_ps0(open_terminal):
    terminal = await open_terminal()
    await terminal.type("unset PROMPT_COMMAND\r")
    assert _commands(await terminal.type("echo still\r")) == [("echo still", "shell", None)]
    # history no longer forced: a line left out of history is not trusted
    await terminal.type("HISTCONTROL=ignorespace\r")
    events = await terminal.type(" echo hidden\r")
    assert _commands(events) == [(" echo hidden", "keystrokes", ["reassembled"])]


@pytest.mark.parametrize("terminal_shell", [["sh"]])
async def test_a_shell_without_a_hook_is_recorded_as_flagged_keystrokes(open_terminal):
    terminal = await open_terminal()
    events = await terminal.type("echo plain\r")
    assert _commands(events) == [("echo plain", "keystrokes", ["reassembled"])]
    await terminal.output_contains("plain")
    assert "\x1b]6973" not in "".join(terminal.stdout)


def test_reports_split_across_reads_are_taken_out():
    import base64

    from jupyter_audit.server.hooks.terminals import OSC, TerminalAudit

    class Recorder:
        events: list = []

        def record(self, event):
            self.events.append(event)

    audit, rec = TerminalAudit("7", hooked=True), Recorder()
    audit.typed("ech hi", {"username": "u"}, rec)
    report = OSC + "c;" + base64.b64encode(b"    3  echo hi").decode() + "\x07"
    text = "before" + report + "after\x1b[0m" + OSC + "p;\x1b\\" + "end"
    for step in (1, 2, 5, len(text)):
        rec.events.clear()
        audit.last_number = -1
        audit.pending = [("ech hi", {"username": "u"})]
        out = "".join(audit.output(text[i : i + step]) for i in range(0, len(text), step))
        assert out == "beforeafter\x1b[0mend"
        assert [e["payload"]["command"] for e in rec.events] == ["echo hi"]
        assert audit.pending == [] and audit.hooked
    assert audit.output(OSC + "c;not base64!\x07ok") == "ok"
    assert rec.events[-1]["flags"] == ["malformed"]
    assert audit.output(OSC + "c;" + base64.b64encode(b"echo forged").decode() + "\x07") == ""
    assert rec.events[-1]["flags"] == ["malformed"]
    # a report that does not advance the history number is not trusted
    audit.typed("echo typed", {"username": "u"}, rec)
    assert audit.output(report) == "" and _commands(rec.events[-1:]) == [
        ("echo typed", "keystrokes", ["reassembled"])
    ]
