"""Ed25519 signing keys for checkpoints and key rotation.

The private key lives in a 0600 PEM file outside the trail; the public key is published beside
it (`<key>.pub`) and inside every checkpoint, so auditors can pin it with `--pubkey`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class KeyError_(Exception):
    """A signing or public key that cannot be used (bad permissions, bad format)."""


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """Short fingerprint of a raw public key."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_b64(public: bytes) -> str:
    return base64.b64encode(public).decode("ascii")


def load_public(text_or_raw: str | bytes) -> bytes:
    """Accept a PEM public key, base64 or hex of the 32 raw bytes; return the raw bytes."""
    data = text_or_raw.encode() if isinstance(text_or_raw, str) else text_or_raw
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped)
        except ValueError as e:
            raise KeyError_(f"not a PEM public key: {e}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyError_("public key is not an Ed25519 key")
        return public_bytes(key)
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(stripped.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            continue
        if len(raw) == 32:
            return raw
    raise KeyError_("public key must be PEM, or 32 bytes in hex or base64")


def verify_signature(public: bytes, signature_b64: str, message: bytes) -> bool:
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(public).verify(sig, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class SigningKey:
    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public = public_bytes(private.public_key())
        self.key_id = key_id(self.public)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._private.sign(message)).decode("ascii")

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        pub = path.with_name(path.name + ".pub")
        pub.write_bytes(self.public_pem())

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        path = Path(path)
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyError_(
                f"signing key {path} is readable by others (mode {mode:o}); run chmod 600 on it"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as e:
            raise KeyError_(f"signing key {path} is not a PEM private key: {e}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyError_(f"signing key {path} is not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: str | Path) -> SigningKey:
        path = Path(path)
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key
