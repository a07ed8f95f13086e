"""Where archived segments go: a local directory or an S3-compatible bucket (boto3).

A target stores whole objects by name and reads them back; it never rewrites one that exists
with other bytes (an archive object is written once). On S3, objects are written with an
Object Lock retain-until date in compliance mode when the bucket has Object Lock enabled
(docs/archive.md says how to set the bucket up). This module moves bytes only: it knows
nothing of trails, segments or verification (`archive` does).
"""

from __future__ import annotations

import os
import urllib.parse
from datetime import datetime
from pathlib import Path

from .durable import write_durably
from .errors import TrailError


class ArchiveError(TrailError):
    """An archive that cannot be read or written: the message names the target and why."""


class ArchiveTarget:
    """Named objects in one place (`LocalTarget`, `S3Target`)."""

    url: str = ""

    def put(self, name: str, data: bytes, retain_until: datetime | None = None) -> None:
        raise NotImplementedError

    def get(self, name: str) -> bytes:
        raise NotImplementedError

    def names(self) -> list[str]:
        """Every object name, sorted."""
        raise NotImplementedError

    def local_path(self, name: str, scratch: Path) -> Path:
        """A local file holding the object (downloaded into `scratch` when remote)."""
        path = scratch / name
        path.write_bytes(self.get(name))
        return path

    def locked_until(self, name: str) -> datetime | None:
        """The retain-until date the target enforces on an object, if any."""
        return None


class LocalTarget(ArchiveTarget):
    def __init__(self, path: str | os.PathLike, create: bool = False):
        self.root = Path(path)
        self.url = str(self.root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes, retain_until: datetime | None = None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / name
        if dest.exists():
            if dest.read_bytes() == data:
                return
            raise ArchiveError(
                f"{dest} exists with other content; an archive file is never replaced"
            )
        write_durably(dest, data)
        if retain_until is not None:
            dest.chmod(0o444)  # a reminder, not a lock: a local directory has none

    def get(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as e:
            raise ArchiveError(f"cannot read {self.root / name}: {e.strerror}") from None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            raise ArchiveError(f"no archive directory {self.root}")
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))

    def local_path(self, name: str, scratch: Path) -> Path:
        return self.root / name


class S3Target(ArchiveTarget):
    """`s3://bucket/prefix` through boto3: endpoint and credentials from the standard AWS
    environment and config files, or `endpoint_url` (an S3-compatible server)."""

    def __init__(self, url: str, endpoint_url: str | None = None):
        try:
            import boto3
        except ImportError:
            raise ArchiveError(
                "an s3:// archive needs boto3: pip install 'jupyter-audit[archive]'"
            ) from None
        parts = urllib.parse.urlparse(url)
        if not parts.netloc:
            raise ArchiveError(f"{url}: no bucket (expected s3://bucket/prefix)")
        self.url = url
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self._lock: bool | None = None

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once)."""
        if self._lock is None:
            try:
                conf = self.client.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                self._lock = enabled == "Enabled"
            except self.client.exceptions.ClientError:
                self._lock = False
        return self._lock

    def put(self, name: str, data: bytes, retain_until: datetime | None = None) -> None:
        import base64
        import hashlib

        extra: dict = {}
        if retain_until is not None and self.object_lock():
            extra = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        key = self._key(name)
        try:
            # written once: a key that exists is never replaced (S3 conditional writes)
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentMD5=digest, IfNoneMatch="*", **extra
            )
        except self.client.exceptions.ClientError as e:
            if e.response.get("Error", {}).get("Code") != "PreconditionFailed":
                raise ArchiveError(f"cannot write s3://{self.bucket}/{key}: {e}") from None
            if self.get(name) != data:
                raise ArchiveError(
                    f"s3://{self.bucket}/{key} exists with other content; an archive object "
                    "is never replaced"
                ) from None
        except Exception as e:  # noqa: BLE001 - botocore's other errors: one line, with the key
            raise ArchiveError(f"cannot write s3://{self.bucket}/{key}: {e}") from None

    def get(self, name: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
        except Exception as e:  # noqa: BLE001
            raise ArchiveError(f"cannot read s3://{self.bucket}/{self._key(name)}: {e}") from None

    def names(self) -> list[str]:
        out: list[str] = []
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            ):
                out.extend(o["Key"][len(start) :] for o in page.get("Contents", []))
        except Exception as e:  # noqa: BLE001
            raise ArchiveError(f"cannot list s3://{self.bucket}/{start}: {e}") from None
        return sorted(n for n in out if n and "/" not in n)

    def locked_until(self, name: str) -> datetime | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as e:  # noqa: BLE001
            raise ArchiveError(f"cannot read s3://{self.bucket}/{self._key(name)}: {e}") from None
        if head.get("ObjectLockMode") != "COMPLIANCE":
            return None
        return head.get("ObjectLockRetainUntilDate")


def open_target(
    where: str | os.PathLike, endpoint_url: str | None = None, *, create: bool = False
) -> ArchiveTarget:
    """The target behind `archive_path`: `s3://bucket/prefix`, or a local directory (made
    with `create`, for writing)."""
    text = str(where)
    if text.startswith("s3://"):
        return S3Target(text, endpoint_url)
    if "://" in text:
        raise ArchiveError(f"{text}: archive paths are a directory or s3://bucket/prefix")
    return LocalTarget(text, create)
