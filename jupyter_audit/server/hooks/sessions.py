"""Which notebook each kernel's trace belongs to, from the moment a session names it, and
`session.renamed` when that name changes.

jupyter_server's sessions tie a path (the notebook) to a kernel. The trail learns it at the
source, the session manager, not from a websocket that happens to connect later: a kernel a
session starts (`start_kernel_for_session`: opening a notebook, restoring a workspace,
changing a notebook's kernel) has its `session.started` carry the notebook, so a trace is
never "(no notebook)" because no cell ran yet. The name then follows the notebook:
- a session moved to another path (`PATCH /api/sessions/{id}` with `path`), and
- a file or folder renamed through the Contents API (`PATCH /api/contents/...`) while a
  kernel's notebook is (under) it
are recorded as `session.renamed` (`from`, `to`, `via`) in the kernel's trace, with the
identity of the request that did it; the gateway stamps later cells with the new name
(`NotebookNames`). JupyterLab renames a file and then moves its session: the second change
finds the name already current and records nothing. A session attached to a running kernel
that has no notebook yet names it (`from` null); one attached to a kernel another session
already names (a console for a notebook) renames nothing.

The renamer does not become a participant of the trace (store/traces.py,
`NOT_TAKING_PART`). Names are recorded through the Recorder, so they are masked like every
other field; nothing here logs a name.
"""

from __future__ import annotations

import inspect
import logging

from ...store.errors import loggable_error
from ...store.records import safe_id
from .lifecycle import record_for_kernel, starting_for

log = logging.getLogger("jupyter_audit.sessions")


class NotebookNames:
    """Kernel id -> the notebook its trace belongs to now, as the sessions said it."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def get(self, kernel_id: str | None) -> str | None:
        return self._names.get(kernel_id) if kernel_id else None

    def set(self, kernel_id: str, name: str) -> None:
        self._names[kernel_id] = name

    def forget(self, kernel_id: str) -> None:
        self._names.pop(kernel_id, None)

    def holding(self, path: str) -> list[str]:
        """The kernels whose notebook is `path`."""
        return [k for k, n in self._names.items() if n == path]

    def under(self, path: str) -> list[tuple[str, str]]:
        """(kernel id, name) of the kernels whose notebook is `path` or inside folder `path`."""
        prefix = path.rstrip("/") + "/"
        return [(k, n) for k, n in self._names.items() if n == path or n.startswith(prefix)]


#: the longest notebook name the trail stores (records.py refuses longer ones)
MAX_NAME = 4096


def recordable(path) -> str | None:
    """A session path as the trail can store it (None: no path). A name jupyter_server
    accepted is never dropped: characters UTF-8 cannot carry (lone surrogates) are written
    as escapes, and a name over MAX_NAME characters is cut, ending in "…"."""
    if not isinstance(path, str) or not path:
        return None
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        path = path.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(path) > MAX_NAME:
        path = path[: MAX_NAME - 1] + "…"
    return path


def _renamed(recorder, kernel_id: str, old: str | None, new: str, via: str, session_id=None):
    recorder.notebooks.set(kernel_id, new)
    record_for_kernel(
        recorder,
        "session.renamed",
        kernel_id,
        {"from": old, "to": new, "via": via, "session_id": safe_id(session_id)},
        notebook=new,
    )


def _name(recorder, kernel_id, path, session_id, via: str) -> None:
    """A session names `kernel_id` `path`: recorded when that changes the kernel's name."""
    kernel_id, path = safe_id(kernel_id), recordable(path)
    if kernel_id is None or path is None:
        return
    old = recorder.notebooks.get(kernel_id)
    if old != path:
        _renamed(recorder, kernel_id, old, path, via, session_id)


def install(recorder, sm, cm) -> None:
    """Wrap the server's session manager `sm` and contents manager `cm` (instance methods,
    as lifecycle.py wraps the kernel manager)."""
    start_for = sm.start_kernel_for_session
    create, update = sm.create_session, sm.update_session
    rename = cm.rename

    async def start_kernel_for_session(*args, **kwargs):
        path = recordable(kwargs.get("path", args[1] if len(args) > 1 else None))
        token = starting_for.set(path)
        try:
            kernel_id = await start_for(*args, **kwargs)
        finally:
            starting_for.reset(token)
        if path is not None and safe_id(kernel_id):
            recorder.notebooks.set(kernel_id, path)  # session.started carried it
        return kernel_id

    async def create_session(*args, **kwargs):
        model = await create(*args, **kwargs)
        try:
            kernel_id = (model.get("kernel") or {}).get("id")
            if recorder.notebooks.get(kernel_id) is None:  # a running kernel, not named yet
                _name(recorder, kernel_id, model.get("path"), model.get("id"), "session")
        except Exception as e:  # noqa: BLE001 - the session itself must go on
            log.error("jupyter-audit: session name not recorded: %s", loggable_error(e))
        return model

    async def update_session(session_id, **kwargs):
        before = None
        if "path" in kwargs or "kernel_id" in kwargs:
            try:
                before = await sm.get_session(session_id=session_id)
            except Exception:  # noqa: BLE001 - the original says what is wrong
                before = None
        result = await update(session_id, **kwargs)
        if before is not None:
            try:
                _session_moved(recorder, before, kwargs)
            except Exception as e:  # noqa: BLE001 - the session itself must go on
                log.error("jupyter-audit: session rename not recorded: %s", loggable_error(e))
        return result

    def renamed_file(old_path, new_path) -> None:
        try:
            old, new = old_path.strip("/"), new_path.strip("/")
            for kernel_id, name in recorder.notebooks.under(old):
                _name(recorder, kernel_id, new + name[len(old) :], None, "contents")
        except Exception as e:  # noqa: BLE001 - the rename itself is done
            log.error("jupyter-audit: notebook rename not recorded: %s", loggable_error(e))

    async def rename_async(old_path, new_path, *args, **kwargs):
        result = await rename(old_path, new_path, *args, **kwargs)
        renamed_file(old_path, new_path)
        return result

    def rename_sync(old_path, new_path, *args, **kwargs):
        result = rename(old_path, new_path, *args, **kwargs)
        renamed_file(old_path, new_path)
        return result

    sm.start_kernel_for_session = start_kernel_for_session
    sm.create_session = create_session
    sm.update_session = update_session
    # a synchronous contents manager (FileContentsManager) calls its rename without awaiting
    cm.rename = rename_async if inspect.iscoroutinefunction(rename) else rename_sync


def _session_moved(recorder, before: dict, changes: dict) -> None:
    """After `PATCH /api/sessions/{id}`: the session's kernel follows its new path; a kernel
    another session names (a notebook's console) is left as it is."""
    old_path = before.get("path")
    old_kernel = (before.get("kernel") or {}).get("id")
    kernel_id = changes.get("kernel_id") or old_kernel
    path = changes.get("path", old_path)
    current = recorder.notebooks.get(kernel_id)
    if kernel_id != old_kernel:  # the session moved to another kernel: name it if nameless
        if current is None:
            _name(recorder, kernel_id, path, before.get("id"), "session")
        return
    if current in (None, recordable(old_path)):
        _name(recorder, kernel_id, path, before.get("id"), "session")
