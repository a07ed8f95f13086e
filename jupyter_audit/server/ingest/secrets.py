"""Per-kernel secrets: how the server knows a batch, or a spooled line, comes from that kernel.

A kernel's secret is an HMAC of its id under the server's kernel key (32 random bytes kept
beside the trail, mode 0600), handed to that kernel's process only (in its environment) and
checked in constant time on every batch. A later server with the same key can recompute it,
so it checks the HMAC on each line a kernel spooled while no server could take its events
(`spool_line_ok`). Anyone who can read that kernel's environment (`/proc/<pid>/environ`:
the same OS account) can read its secret too: docs/threat-model.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


class KernelSecrets:
    def __init__(self, key: bytes | None = None):
        # without a key (tests, tools): one per process, so spools of earlier servers fail
        self._key = key if key is not None else secrets.token_bytes(32)
        self._issued: dict[str, str] = {}

    def secret_of(self, kernel_id: str) -> str:
        digest = hmac.new(self._key, b"kernel-secret\0" + kernel_id.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")

    def issue(self, kernel_id: str) -> str:
        """The secret for a kernel this server starts: its batches are accepted until
        `forget` (its shutdown)."""
        secret = self._issued[kernel_id] = self.secret_of(kernel_id)
        return secret

    def check(self, kernel_id: str | None, secret: str | None) -> bool:
        if not kernel_id or not secret:
            return False
        expected = self._issued.get(kernel_id)
        return expected is not None and hmac.compare_digest(expected, secret)

    def forget(self, kernel_id: str) -> None:
        self._issued.pop(kernel_id, None)

    def spool_line_ok(self, kernel_id: str, event: bytes, mac: bytes) -> bool:
        """Was this spooled line written by that kernel (HMAC under its secret)?"""
        key = self.secret_of(kernel_id).encode("utf-8")
        expected = hmac.new(key, event, hashlib.sha256).hexdigest().encode("ascii")
        return hmac.compare_digest(expected, mac)
