"""Shell capture: one ``op.shell`` event per command run from notebook code.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Environment variables of the child are never captured.

Covered: ``!cmd`` and ``!!cmd`` (and ``%sx``/``%system``, through IPython's ``system`` /
``getoutput``), ``%%script`` and its named forms (``%%bash``, ``%%sh``, …),
``subprocess.Popen`` — so ``run``/``call``/``check_call``/``check_output``/``os.popen`` —
reported when the exit is first observed (``wait``/``poll``/``communicate``, or asyncio's
child watcher for ``asyncio.create_subprocess_*``), and ``os.system``. A Popen that is never
waited for is reported when it is garbage-collected, with a null exit code. Not covered:
``os.spawn*``/``os.exec*``/``os.fork``, ``pty.spawn``, and C extensions that start
processes themselves.

Only the outermost mechanism reports: ``!cmd`` is one event even if IPython runs it through
``subprocess``; ``subprocess.run`` is one event labelled ``subprocess.run``.
"""

from __future__ import annotations

import functools
import os
import shlex
import weakref
from contextvars import ContextVar
from time import perf_counter_ns

from .. import approvals
from ..context import active, current_msg_id, is_wrapped, log_once, mark, record

COMMAND_CAP = 100_000


class _Scope:
    """What the outermost shell mechanism in progress is. ``owner`` scopes report
    themselves (processes started underneath only lend their exit code); label scopes only
    name the ``via`` of the Popen that will report."""

    __slots__ = ("via", "owner", "procs")

    def __init__(self, via: str, owner: bool) -> None:
        self.via = via
        self.owner = owner
        self.procs: list = []


_SCOPE: ContextVar[_Scope | None] = ContextVar("jupyter_audit_shell_scope", default=None)
SCOPE = _SCOPE  # inside a captured shell mechanism (for the egress capture)

_ATTR = "_jupyter_audit_shell"


def _text(value) -> str:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    elif not isinstance(value, str):
        try:
            value = os.fspath(value)
        except TypeError:
            value = str(value)
        if isinstance(value, bytes):
            value = os.fsdecode(value)
    return value


def _command(args, shell: bool) -> tuple[str, list | None]:
    if isinstance(args, str | bytes | os.PathLike):
        cmd = _text(args)
        return cmd[:COMMAND_CAP], (None if shell else [cmd])
    try:
        argv = [_text(a) for a in args]
    except TypeError:
        return _text(args)[:COMMAND_CAP], None
    return shlex.join(argv)[:COMMAND_CAP], argv


def report(
    via: str,
    command: str,
    argv,
    exit_code,
    t0: int,
    *,
    error: BaseException | str | None = None,
    msg_id=None,
    use_msg_id: bool = False,
    extra: dict | None = None,
) -> None:
    duration_us = (perf_counter_ns() - t0) // 1000
    try:
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        payload = {
            "command": command,
            "argv": argv,
            "exit_code": exit_code if type(exit_code) is int else None,
            "duration_us": duration_us,
            "error": error,
            "via": via,
        }
        if extra:
            payload.update(extra)
        if use_msg_id:
            record("op.shell", payload, msg_id)
        else:
            record("op.shell", payload)
    except Exception as e:
        log_once(f"shell report ({via})", e)


def _owned_scope(via: str):
    """Run a block as the owner of any process it starts; returns (scope, token) or None
    when an outer mechanism already owns the report or capture is off."""
    current = _SCOPE.get()
    if (current is not None and current.owner) or not active():
        return None
    scope = _Scope(via, True)
    return scope, _SCOPE.set(scope)


# -- subprocess.Popen ---------------------------------------------------------------------


class _ProcInfo:
    __slots__ = ("via", "command", "argv", "t0", "msg_id", "cwd", "done", "__weakref__")

    def __init__(self, via, command, argv, t0, msg_id, cwd):
        self.via, self.command, self.argv, self.t0 = via, command, argv, t0
        self.msg_id, self.cwd, self.done = msg_id, cwd, False


def _report_proc(info: _ProcInfo, returncode, *, error=None) -> None:
    if info.done:
        return
    info.done = True
    extra = {"cwd": info.cwd} if info.cwd is not None else None
    report(
        info.via,
        info.command,
        info.argv,
        returncode,
        info.t0,
        error=error,
        msg_id=info.msg_id,
        use_msg_id=True,
        extra=extra,
    )


def _report_unwaited(info: _ProcInfo) -> None:
    if not info.done:
        _report_proc(info, None, error="process was not waited for")


def observe_exit(proc) -> None:
    """Report a Popen whose exit status has just become known (once)."""
    info = getattr(proc, _ATTR, None)
    if info is not None and not info.done and proc.returncode is not None:
        _report_proc(info, proc.returncode)


def _popen_meta(args, kwargs):
    shell = bool(kwargs.get("shell", False))
    command, argv = _command(args, shell)
    cwd = kwargs.get("cwd")
    return command, argv, (None if cwd is None else _text(cwd))


def patch_subprocess(module, patcher) -> None:
    Popen = module.Popen
    orig_init = Popen.__init__
    if is_wrapped(orig_init):
        return

    @functools.wraps(orig_init)
    def __init__(self, args, *a, **kwargs):
        scope = _SCOPE.get()
        if not active() or (scope is not None and scope.owner):
            orig_init(self, args, *a, **kwargs)
            if scope is not None:
                scope.procs.append(self)
            return
        t0 = perf_counter_ns()
        try:
            if a:  # shell= and cwd= given positionally (rare): take them from the signature
                kw = dict(zip(_POPEN_PARAMS, a, strict=False))
                kw.update(kwargs)
            else:
                kw = kwargs
            command, argv, cwd = _popen_meta(args, kw)
            info = _ProcInfo(
                scope.via if scope is not None else "Popen",
                command,
                argv,
                t0,
                current_msg_id(),
                cwd,
            )
        except Exception as e:
            log_once("Popen meta", e)
            info = None
        # before the process exists: raises when it must not start
        ticket = approvals.check_shell(info.command if info is not None else _text(args))
        try:
            orig_init(self, args, *a, **kwargs)
        except BaseException as e:
            if info is not None:
                _report_proc(info, None, error=e)
            if ticket is not None:
                ticket.done(None, e)
            raise
        if ticket is not None:
            ticket.done(None, None)
        if info is not None:
            try:
                setattr(self, _ATTR, info)
                weakref.finalize(self, _report_unwaited, info).atexit = False
            except Exception as e:
                log_once("Popen attach", e)

    patcher.replace(Popen, "__init__", mark(__init__))

    for name in ("wait", "poll"):
        orig = getattr(Popen, name)

        def make(orig):
            @functools.wraps(orig)
            def method(self, *args, **kwargs):
                result = orig(self, *args, **kwargs)
                if self.returncode is not None and getattr(self, _ATTR, None) is not None:
                    observe_exit(self)
                return result

            return mark(method)

        patcher.replace(Popen, name, make(orig))

    for name, via in (
        ("run", "subprocess.run"),
        ("call", "subprocess.call"),
        ("check_call", "subprocess.check_call"),
        ("check_output", "subprocess.check_output"),
        ("getoutput", "subprocess.getoutput"),
        ("getstatusoutput", "subprocess.getstatusoutput"),
    ):
        orig = getattr(module, name, None)
        if orig is not None and not is_wrapped(orig):
            patcher.replace(module, name, _label(orig, via))


_POPEN_PARAMS = (
    "bufsize",
    "executable",
    "stdin",
    "stdout",
    "stderr",
    "preexec_fn",
    "close_fds",
    "shell",
    "cwd",
)


def _label(orig, via: str):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if _SCOPE.get() is not None or not active():
            return orig(*args, **kwargs)
        token = _SCOPE.set(_Scope(via, False))
        try:
            return orig(*args, **kwargs)
        finally:
            _SCOPE.reset(token)

    return mark(wrapper)


def patch_asyncio_subprocess(module, patcher) -> None:
    """asyncio's child watcher copies the exit status into the Popen directly; report it
    there (covers ``asyncio.create_subprocess_exec/shell``)."""
    cls = module.BaseSubprocessTransport
    orig = getattr(cls, "_process_exited", None)
    if orig is None or is_wrapped(orig):
        return

    @functools.wraps(orig)
    def _process_exited(self, returncode):
        result = orig(self, returncode)
        try:
            proc = getattr(self, "_proc", None)
            if proc is not None:
                observe_exit(proc)
        except Exception as e:
            log_once("asyncio subprocess exit", e)
        return result

    patcher.replace(cls, "_process_exited", mark(_process_exited))


# -- os.system / os.popen -----------------------------------------------------------------


def patch_os(module, patcher) -> None:
    orig_system = module.system
    if not is_wrapped(orig_system):

        @functools.wraps(orig_system)
        def system(command):
            owned = _owned_scope("os.system")
            if owned is None:
                return orig_system(command)
            scope, token = owned
            try:
                ticket = approvals.check_shell(command)
            except BaseException:
                _SCOPE.reset(token)
                raise
            t0 = perf_counter_ns()
            try:
                status = orig_system(command)
            except BaseException as e:
                _SCOPE.reset(token)
                report("os.system", _text(command), None, None, t0, error=e)
                raise
            _SCOPE.reset(token)
            try:
                code = module.waitstatus_to_exitcode(status) if status != -1 else None
            except Exception:
                code = None
            report("os.system", _text(command)[:COMMAND_CAP], None, code, t0)
            if ticket is not None:
                ticket.done(code, None)
            return status

        patcher.replace(module, "system", mark(system))

    orig_popen = getattr(module, "popen", None)
    if orig_popen is not None and not is_wrapped(orig_popen):
        patcher.replace(module, "popen", _label(orig_popen, "os.popen"))


# -- IPython: !cmd, !!cmd, %%script --------------------------------------------------------


def _wrap_ipython_system(orig, via: str, returns_code: bool):
    """IPython's module-level ``system``/``getoutput``: they receive the command after
    IPython expanded ``$var``/``{expr}``, which is what actually ran."""

    @functools.wraps(orig)
    def wrapper(cmd, *args, **kwargs):
        owned = _owned_scope(via)
        if owned is None:
            return orig(cmd, *args, **kwargs)
        scope, token = owned
        try:
            ticket = approvals.check_shell(cmd)
        except BaseException:
            _SCOPE.reset(token)
            raise
        t0 = perf_counter_ns()
        try:
            result = orig(cmd, *args, **kwargs)
        except BaseException as e:
            _SCOPE.reset(token)
            report(via, _text(cmd)[:COMMAND_CAP], None, None, t0, error=e)
            raise
        _SCOPE.reset(token)
        code = result if returns_code and type(result) is int else None
        if code is None and scope.procs:
            code = scope.procs[-1].returncode
        report(via, _text(cmd)[:COMMAND_CAP], None, code, t0)
        if ticket is not None:
            ticket.done(code, None)
        return result

    return mark(wrapper)


def patch_ipython_modules(patcher) -> None:
    import sys

    targets = (
        ("IPython.core.interactiveshell", "system", "!", True),
        ("IPython.core.interactiveshell", "getoutput", "!!", False),
        ("IPython.utils.process", "system", "!", True),
        ("IPython.utils.process", "getoutput", "!!", False),
        ("ipykernel.zmqshell", "system", "!", True),
    )
    for modname, attr, via, returns_code in targets:
        module = sys.modules.get(modname)
        orig = getattr(module, attr, None) if module is not None else None
        if orig is not None and not is_wrapped(orig):
            patcher.replace(module, attr, _wrap_ipython_system(orig, via, returns_code))


def _wrap_script_magic(fn, name: str, interpreter: str | None):
    @functools.wraps(fn)
    def magic(line, cell=None, *args, **kwargs):
        via = f"%%{name}"
        owned = _owned_scope(via)
        if owned is None:
            return fn(line, cell, *args, **kwargs)
        scope, token = owned
        try:
            words = shlex.split(line) if line else []
        except ValueError:
            words = line.split()
        argv = ([interpreter] if interpreter else []) + words
        command = (cell or "")[:COMMAND_CAP]
        extra = {"line": line}
        if "--bg" in words:
            extra["background"] = True
        try:
            ticket = approvals.check_shell(f"{line}\n{cell or ''}" if line else (cell or ""))
        except BaseException:
            _SCOPE.reset(token)
            raise
        t0 = perf_counter_ns()
        try:
            result = fn(line, cell, *args, **kwargs)
        except BaseException as e:
            _SCOPE.reset(token)
            code = getattr(e, "returncode", None)
            report(via, command, argv, code, t0, error=e, extra=extra)
            raise
        _SCOPE.reset(token)
        code = None
        if scope.procs:
            code = scope.procs[-1].returncode
        report(via, command, argv, code, t0, extra=extra)
        if ticket is not None:
            ticket.done(code, None)
        return result

    return mark(magic)


def patch_script_magics(ip, patcher) -> None:
    try:
        cell_magics = ip.magics_manager.magics["cell"]
    except Exception:
        return
    script = None
    for registered in ip.magics_manager.registry.values():
        if type(registered).__name__ == "ScriptMagics":
            script = registered
            break
    names = ["script"]
    paths = {}
    if script is not None:
        names += list(script.script_magics)
        paths = dict(script.script_paths)
    for name in names:
        fn = cell_magics.get(name)
        if fn is None or is_wrapped(fn):
            continue
        interpreter = None if name == "script" else paths.get(name, name)
        patcher.replace_item(cell_magics, name, _wrap_script_magic(fn, name, interpreter))


def install(hooks, patcher, ip=None) -> None:
    hooks.register("subprocess", lambda m: patch_subprocess(m, patcher))
    hooks.register("asyncio.base_subprocess", lambda m: patch_asyncio_subprocess(m, patcher))
    patch_os(os, patcher)
    patch_ipython_modules(patcher)
    if ip is not None:
        try:
            patch_script_magics(ip, patcher)
        except Exception as e:
            log_once("script magics", e)
