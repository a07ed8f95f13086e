"""Per-kernel secrets: how the server knows a kernel batch comes from that kernel.

One random secret per kernel, handed to that kernel's process only (in its environment) and
checked in constant time on every batch."""

from __future__ import annotations

import hmac
import secrets


class KernelSecrets:
    """One random secret per kernel, handed to that kernel's process only."""

    def __init__(self):
        self._secrets: dict[str, str] = {}

    def issue(self, kernel_id: str) -> str:
        secret = self._secrets.get(kernel_id)
        if secret is None:
            secret = self._secrets[kernel_id] = secrets.token_urlsafe(32)
        return secret

    def check(self, kernel_id: str | None, secret: str | None) -> bool:
        if not kernel_id or not secret:
            return False
        expected = self._secrets.get(kernel_id)
        return expected is not None and hmac.compare_digest(expected, secret)

    def forget(self, kernel_id: str) -> None:
        self._secrets.pop(kernel_id, None)
