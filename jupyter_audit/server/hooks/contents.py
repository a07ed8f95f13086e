"""Saved files: `file.saved` (path, size, sha256) for every save through the Contents API,
with the identity of the request that saved it.

A save of a notebook that kernels' sessions have open is recorded in each of those kernels'
traces, one record per trace (same hash), so every trace shows the versions of its notebook;
a save of a file no kernel has open is recorded once, in no trace. Saving does not make the
saver a participant of those traces (store/traces.py, `NOT_TAKING_PART`).

A post-save hook (the Contents API's public extension point) rather than jupyter_server's
`contents_service` events: the hook runs synchronously with the file's path on disk, so the
bytes hashed are the bytes saved.
"""

from __future__ import annotations

import hashlib
import logging

from ...store.errors import loggable_error
from .caller import current_identity
from .lifecycle import record_for_kernel

log = logging.getLogger("jupyter_audit.contents")


def install_save_hook(recorder, cm) -> None:
    """file.saved (path, size, sha256) for every save through the Contents API."""

    def on_save(model, os_path, contents_manager, **_):
        if model.get("type") == "directory":
            return  # a new folder: nothing to hash
        digest, size = hashlib.sha256(), 0
        try:
            with open(os_path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as e:
            log.error("jupyter-audit: saved file not hashed: %s", e.strerror)
            return
        path = model.get("path") or ""
        notebook = path if model.get("type") == "notebook" else None
        payload = {
            "path": path,
            "type": model.get("type"),
            "sha256": digest.hexdigest(),
            "size": size,
        }
        kernels = recorder.notebooks.holding(path)
        for kernel_id in kernels:  # logs its own failures: saving goes on
            record_for_kernel(recorder, "file.saved", kernel_id, payload, notebook=notebook)
        if kernels:
            return
        try:
            recorder.record(
                {
                    "kind": "file.saved",
                    "identity": current_identity(),
                    "notebook": notebook,
                    "payload": payload,
                }
            )
        except Exception as e:  # noqa: BLE001 - saving must not fail because of the trail
            log.error("jupyter-audit: file.saved not recorded: %s", loggable_error(e))

    cm.register_post_save_hook(on_save)
