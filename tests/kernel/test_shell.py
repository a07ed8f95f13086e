"""Shell capture in a real kernel: !, !!, %%bash/%%sh/%%script, subprocess, os.system."""


def shell_ops(kernel, code):
    msg_id = kernel.run(code)
    return [e["payload"] for e in kernel.ingest.cell(msg_id) if e["kind"] == "op.shell"]


def test_bang_and_double_bang(audited, tmp_path):
    (tmp_path / "visible.txt").write_text("x")
    ops = shell_ops(
        audited,
        f"d = {str(tmp_path)!r}\n!ls {{d}}\nout = !ls {{d}}\nassert out == ['visible.txt']\n!exit 4",
    )
    assert [(p["via"], p["command"], p["exit_code"]) for p in ops] == [
        ("!", f"ls {tmp_path}", 0),  # what ran: after IPython expanded {d}
        ("!!", f"ls {tmp_path}", 0),  # IPython's getoutput ran it through subprocess
        ("!", "exit 4", 4),
    ]


def test_script_magics(audited):
    ops = shell_ops(audited, "%%bash\necho from bash\nexit 0")
    assert [(p["via"], p["command"], p["argv"], p["exit_code"]) for p in ops] == [
        ("%%bash", "echo from bash\nexit 0\n", ["bash"], 0)
    ]
    ops = shell_ops(audited, "%%sh\necho from sh")
    assert [(p["via"], p["exit_code"]) for p in ops] == [("%%sh", 0)]
    ops = shell_ops(audited, "%%script bash --no-raise-error\nexit 3")
    assert [(p["via"], p["argv"], p["exit_code"]) for p in ops] == [
        ("%%script", ["bash", "--no-raise-error"], 3)
    ]
    msg_id, reply = audited.execute("%%bash\nexit 5")
    assert reply["status"] == "error"
    ops = [e["payload"] for e in audited.ingest.cell(msg_id) if e["kind"] == "op.shell"]
    assert [(p["via"], p["exit_code"]) for p in ops] == [("%%bash", 5)]
    assert ops[0]["error"].startswith("CalledProcessError")


def test_subprocess_and_os_system(audited, tmp_path):
    ops = shell_ops(
        audited,
        f"""
import subprocess, os
subprocess.run(["true"])
assert subprocess.check_output(["echo", "hi there"]) == b"hi there\\n"
p = subprocess.Popen("exit 7", shell=True, cwd={str(tmp_path)!r})
p.communicate()
assert os.system("exit 2") != 0
try:
    subprocess.run(["/no/such/binary"])
except FileNotFoundError:
    pass
with os.popen("echo popen") as f:
    f.read()
""",
    )
    got = [(p["via"], p["command"], p["argv"], p["exit_code"]) for p in ops]
    assert got[:4] == [
        ("subprocess.run", "true", ["true"], 0),
        ("subprocess.check_output", "echo 'hi there'", ["echo", "hi there"], 0),
        ("Popen", "exit 7", None, 7),
        ("os.system", "exit 2", None, 2),
    ]
    assert ops[2]["cwd"] == str(tmp_path)
    assert got[4][0] == "subprocess.run" and got[4][3] is None
    assert ops[4]["error"].startswith("FileNotFoundError")
    assert got[5][:2] == ("os.popen", "echo popen") and got[5][3] == 0
    assert all(isinstance(p["duration_us"], int) for p in ops)


def test_asyncio_subprocess(audited):
    ops = shell_ops(
        audited,
        """
import asyncio
proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 6")
assert await proc.wait() == 6
""",
    )
    assert [(p["via"], p["argv"], p["exit_code"]) for p in ops] == [
        ("Popen", ["sh", "-c", "exit 6"], 6)
    ]


def test_popen_never_waited_for_is_still_reported(audited):
    msg_id = audited.run(
        """
import subprocess, gc, time
p = subprocess.Popen(["true"])
time.sleep(0.2)
del p
gc.collect()
subprocess.Popen(["true"]).wait()  # lets subprocess reap the first one
gc.collect()
"""
    )
    ops = [e["payload"] for e in audited.ingest.cell(msg_id) if e["kind"] == "op.shell"]
    assert len(ops) == 2
    unwaited = [p for p in ops if p["error"] == "process was not waited for"]
    assert len(unwaited) == 1 and unwaited[0]["exit_code"] is None
