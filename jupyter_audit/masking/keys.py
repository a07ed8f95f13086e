"""The pseudonym key: 32 random bytes in a file only the server's account can read."""

from __future__ import annotations

import os
import secrets
import stat
from typing import Any

from .engine import MaskingError

__all__ = ["KEY_BYTES", "load_or_create_key", "record_key_in_use"]

KEY_BYTES = 32
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def load_or_create_key(path: str | os.PathLike) -> bytes:
    """Return the 32-byte pseudonym key stored at ``path``, creating it if missing.

    A new key file is created with mode 0600 (missing parent directories with 0700),
    atomically: concurrent callers end up with the same key. An existing key file is refused
    (:class:`MaskingError`) when it is not a regular file, is a symlink, is accessible by group
    or others, or does not hold exactly 32 bytes.
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise MaskingError("no pseudonym key path given")
    try:
        return _load(path)
    except FileNotFoundError:
        pass
    _create(path)
    return _load(path)


def _load(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise MaskingError(f"pseudonym key file {path} is a symlink; refusing it") from exc
        raise MaskingError(f"cannot read pseudonym key file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MaskingError(f"pseudonym key file {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise MaskingError(
                f"pseudonym key file {path} has mode {mode:04o}: it must not be accessible by "
                f"group or others; run `chmod 600 {path}`"
            )
        data = b""
        while len(data) <= KEY_BYTES:
            chunk = os.read(fd, KEY_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        got = f"{len(data)} bytes" if len(data) <= KEY_BYTES else f"more than {KEY_BYTES} bytes"
        raise MaskingError(
            f"pseudonym key file {path} holds {got}, expected exactly {KEY_BYTES} random bytes"
        )
    return data


def _makedirs_private(directory: str) -> None:
    missing = []
    d = directory
    while d and not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # whatever the umask


def _create(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    _makedirs_private(directory)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic; fails if another process created the key first
        except FileExistsError:
            pass
        except OSError:
            # file systems without hard links: exclusive create, then write
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
            except FileExistsError:
                return
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def record_key_in_use(store: Any, key_id: str) -> str | None | bool:
    """Record `key_id` as `masking.key_rotated` in the trail `store` (a `TrailStore`) unless
    it is the key the trail last recorded (a new key file, or the first start): an auditor
    sees from which event on pseudonyms change; those stored before stay as they are
    (records are signed). The key id recorded before (None: none), or False if unchanged."""
    from ..identity.snapshot import system_identity

    last = store.latest_payload("masking.key_rotated")
    previous = last["new_key_id"] if last else None
    if previous == key_id:
        return False
    store.append(
        {
            "kind": "masking.key_rotated",
            "identity": system_identity(),
            "payload": {"old_key_id": previous, "new_key_id": key_id},
        }
    )
    return previous
