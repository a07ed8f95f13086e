"""Capture of outbound operations (SQL, HTTP, shell) made from notebook code.

kernel/: runs inside user kernels; never opens the trail file, never trusts its own identity
claims. Standard library only: optional drivers are patched only if and when the user
imports them (already imported at load time, or later through a ``sys.meta_path`` hook).

Every wrapper calls the original exactly once, lets its result or exception through
untouched, and reports through :func:`..context.record`, which never raises. A failure of
our own bookkeeping is logged once and otherwise ignored.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import ModuleType

from ..context import log_once

_MISSING = object()


class Patcher:
    """Replaces attributes and remembers how to put every one of them back."""

    def __init__(self) -> None:
        self._undo: list = []

    def replace(self, owner: object, name: str, new: object) -> object:
        """Set ``owner.name = new``; return the previous value (as seen through getattr)."""
        try:
            own = vars(owner).get(name, _MISSING)
        except TypeError:  # no __dict__
            own = _MISSING
        previous = getattr(owner, name)
        setattr(owner, name, new)
        self._undo.append((owner, name, own))
        return previous

    def replace_item(self, mapping: dict, key: str, new: object) -> object:
        """Set ``mapping[key] = new``; return the previous value."""
        previous = mapping.get(key, _MISSING)
        mapping[key] = new

        def undo():
            if previous is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = previous

        self._undo.append(undo)
        return previous

    def defer(self, undo: Callable[[], object]) -> None:
        """Run ``undo`` when everything is restored (in reverse order of registration)."""
        self._undo.append(undo)

    def restore(self) -> None:
        while self._undo:
            item = self._undo.pop()
            if callable(item):
                try:
                    item()
                except Exception as e:  # pragma: no cover
                    log_once("restore", e)
                continue
            owner, name, own = item
            try:
                if own is _MISSING:
                    delattr(owner, name)
                else:
                    setattr(owner, name, own)
            except Exception as e:  # pragma: no cover
                log_once(f"restore {name}", e)


class PostImportHooks:
    """Run a patch function for a module as soon as it is imported (or now, if it already
    is). Installed first on ``sys.meta_path``; it only ever wraps the loader's
    ``exec_module`` of the modules it watches, so imports behave exactly as before."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._busy = threading.local()
        self._installed = False

    def register(self, name: str, fn: Callable[[ModuleType], None]) -> None:
        module = sys.modules.get(name)
        if module is not None:
            _call(fn, module)
            return
        self._hooks.setdefault(name, []).append(fn)
        if not self._installed:
            sys.meta_path.insert(0, self)
            self._installed = True

    def uninstall(self) -> None:
        self._hooks.clear()
        if self._installed:
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            self._installed = False

    # importlib.abc.MetaPathFinder protocol
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._hooks:
            return None
        busy = self._busy.__dict__.setdefault("names", set())
        if fullname in busy:
            return None
        busy.add(fullname)
        try:
            spec = None
            for finder in list(sys.meta_path):
                if finder is self:
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        orig_exec = loader.exec_module
        hooks = self._hooks

        def exec_module(module):
            try:
                orig_exec(module)
            finally:
                try:
                    del loader.exec_module  # back to the loader's own method
                except AttributeError:
                    pass
            if getattr(module, "__name__", None) == fullname:
                for fn in hooks.pop(fullname, ()):
                    _call(fn, module)

        try:
            loader.exec_module = exec_module
        except Exception:  # a loader that refuses attributes: patch nothing, import as usual
            return spec
        return spec


def _call(fn: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        fn(module)
    except Exception as e:
        log_once(f"patch {getattr(module, '__name__', '?')}", e)
