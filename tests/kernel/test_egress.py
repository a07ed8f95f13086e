"""Egress no capture path saw: connections and process starts made during a cell outside
every captured operation are reported as `op.uncaptured` (audit hooks, PEP 578)."""

import socket
import threading


def uncaptured(kernel, code):
    msg_id = kernel.run(code)
    events = kernel.ingest.cell(msg_id)
    return [e["payload"] for e in events if e["kind"] == "op.uncaptured"], events


def test_a_raw_socket_and_a_program_started_by_hand_are_reported(audited, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(
        target=lambda: [accepted.append(listener.accept()) for _ in range(3)], daemon=True
    ).start()
    gaps, events = uncaptured(
        audited,
        f"""
import socket, os
for _ in range(3):  # the same destination three times: reported once for the cell
    s = socket.create_connection(("127.0.0.1", {port}))
    s.close()
pid = os.posix_spawn("/bin/true", ["/bin/true"], dict(os.environ))
os.waitpid(pid, 0)
""",
    )
    listener.close()
    assert {
        "what": "socket.connect",
        "host": "127.0.0.1",
        "port": port,
        "family": "AF_INET",
    } in gaps
    assert sum(1 for g in gaps if g["what"] == "socket.connect") == 1
    assert {"what": "os.posix_spawn", "host": "/bin/true", "port": None, "family": None} in gaps


def test_what_a_capture_path_saw_is_not_reported_again(audited, tmp_path):
    """Captured HTTP, SQL and shell commands account for their own connections and
    processes; the kernel side's own transport is not the cell's egress."""
    (tmp_path / "page.html").write_text("hello")
    gaps, events = uncaptured(
        audited,
        f"""
import subprocess, sqlite3, urllib.request, http.server, threading, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(tmp_path)!r})
handler.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
urllib.request.urlopen(f"http://127.0.0.1:{{srv.server_port}}/page.html").read()
srv.shutdown()
subprocess.run(["true"])
sqlite3.connect(":memory:").execute("select 1")
""",
    )
    kinds = [e["kind"] for e in events]
    assert "op.http" in kinds and "op.shell" in kinds and "op.sql" in kinds
    assert gaps == []
