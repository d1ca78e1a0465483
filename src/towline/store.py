"""The shared store: where every worker and the CLI keep what outlives a machine.

Artifacts (tool logs, large outputs), plan files and workspace snapshots live here, so
`towline logs` works from any machine and another worker can carry on a workstream whose
holder died. ``TOWLINE_STORE`` names it:

- a folder (a local path, or a shared mount such as NFS), by default ``store/`` in
  towline's local folder (``.towline/store``), so one machine needs nothing set up;
- ``s3://bucket/prefix`` on S3 or any S3-compatible service, through boto3 and the usual
  ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for a service other than AWS's).

Keys are ``/``-separated, each part one safe name (callers build them with
:func:`towline.activities.artifacts.safe_component`). A write replaces the whole object
atomically: a reader never sees half of one.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from towline.config import home

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEME = "s3://"
_KEY_PART = re.compile(r"^[A-Za-z0-9._~%+=-]+$")


class StoreError(RuntimeError):
    """The store cannot be reached or refused a request; the message names the store."""


def store_url() -> str:
    """What ``TOWLINE_STORE`` names, or the default folder beside towline's local files."""
    return os.environ.get("TOWLINE_STORE") or str(home() / "store")


def check_key(key: str) -> str:
    """``key`` if every part of it is a safe name; ``ValueError`` otherwise."""
    parts = key.split("/")
    for part in parts:
        if not _KEY_PART.match(part) or part in (".", ".."):
            raise ValueError(f"bad store key {key!r} (part {part!r})")
    return key


class Store(ABC):
    """Objects by key: a folder or an S3 bucket."""

    location: str

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key``."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's content; ``FileNotFoundError`` when there is none."""

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> None:
        """Write the object to ``dest`` (replaced whole); ``FileNotFoundError`` if none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; one that is not there is not an error."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix`` (a folder-like prefix, ``a/b/``)."""

    def local_path(self, key: str) -> Path | None:
        """The object's own file, when the store is a folder (tools write it in place)."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StoreError` if this process cannot use the store at all."""

    @abstractmethod
    def probe(self) -> None:
        """A cheap real operation, for the worker's ``/readyz``: raise :class:`StoreError`
        (saying why) if the store cannot be used right now."""

    def size(self) -> dict[str, tuple[int, int]]:
        """Objects and bytes stored, by the first part of their keys (``artifacts``,
        ``snapshots``, ``plans``...): one listing of the whole store."""
        out: dict[str, tuple[int, int]] = {}
        for obj in self.list(""):
            top = obj.key.split("/", 1)[0]
            objects, size = out.get(top, (0, 0))
            out[top] = (objects + 1, size + obj.size)
        return out

    def where(self, key: str) -> str:
        """Where the object lives, for messages."""
        return f"{self.location.rstrip('/')}/{key}"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch


class FolderStore(Store):
    """A folder, on a local disk or a shared mount."""

    min_free = 1 << 20  # bytes: with less, /readyz says the store is full

    def __init__(self, root: Path, *, what: str = "store folder") -> None:
        self.root = root.resolve()
        self.location = str(self.root)
        self._what = what

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"{key!r} points outside the {self._what} {self.root}")
        return path

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the store {self.root} is not a folder")

    def probe(self) -> None:
        if not self.root.exists():
            raise StoreError(
                f"the store folder {self.root} does not exist (removed, or unmounted?)"
            )
        if not self.root.is_dir():
            raise StoreError(f"the store {self.root} is not a folder")
        try:
            with os.scandir(self.root) as entries:
                next(entries, None)
        except OSError as e:
            raise StoreError(f"cannot list the store folder {self.root}: {e.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write in the store folder {self.root}")
        fs = os.statvfs(self.root)
        if (free := fs.f_bavail * fs.f_frsize) < self.min_free:
            raise StoreError(f"the store folder {self.root} is full ({free} bytes free)")

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        if dest == path.resolve():
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(f"not in the store: {path}") from None

    def get_file(self, key: str, dest: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"not in the store: {path}")
        shutil.copyfile(path, dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[StoredObject]:
        start = self.root.joinpath(*[p for p in prefix.split("/") if p])
        for folder, _, files in os.walk(start):
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # a write under way
                path = Path(folder) / name
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed meanwhile
                key = path.relative_to(self.root).as_posix()
                yield StoredObject(key, st.st_size, st.st_mtime)


class S3Store(Store):
    """A bucket (and a prefix in it) on S3 or an S3-compatible service."""

    def __init__(self, url: str) -> None:
        rest = url[len(S3_SCHEME) :]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StoreError(f"TOWLINE_STORE={url!r}: expected s3://bucket or s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = url.rstrip("/")
        self._client: S3Client | None = None
        self._probe_client: S3Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:
                    raise StoreError(
                        f"TOWLINE_STORE={self.location} needs boto3: pip install 'towline[s3]'"
                    ) from None
                config = Config(retries={"max_attempts": 5, "mode": "standard"})
                self._client = boto3.client("s3", config=config)
            return self._client

    def check(self) -> None:
        _ = self.client  # boto3 is installed, and the AWS_* settings parse

    def probe(self) -> None:
        # A client of its own, quick to give up: a readiness probe must answer in seconds,
        # and the shared client retries for the tools' sake.
        with self._lock:
            if self._probe_client is None:
                import boto3
                from botocore.config import Config

                config = Config(connect_timeout=2, read_timeout=2, retries={"max_attempts": 1})
                self._probe_client = boto3.client("s3", config=config)
            client = self._probe_client
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        except Exception as e:
            raise StoreError(f"{self.location} does not answer a listing: {e}") from None

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"not in the store: {self.where(key)}") from None
            raise StoreError(f"store {self.location}: {what} {key}: {e}") from None
        except BotoCoreError as e:
            raise StoreError(f"store {self.location}: {what} {key}: {e}") from None

    def put(self, key: str, data: bytes) -> None:
        k = self._key(key)
        self._call("put", key, lambda: self.client.put_object(Bucket=self.bucket, Key=k, Body=data))

    def put_file(self, key: str, path: Path) -> None:
        k = self._key(key)
        self._call("put", key, lambda: self.client.upload_file(str(path), self.bucket, k))

    def get(self, key: str) -> bytes:
        k = self._key(key)
        reply = self._call("get", key, lambda: self.client.get_object(Bucket=self.bucket, Key=k))
        data: bytes = reply["Body"].read()
        return data

    def get_file(self, key: str, dest: Path) -> None:
        k = self._key(key)
        self._call("get", key, lambda: self.client.download_file(self.bucket, k, str(dest)))

    def exists(self, key: str) -> bool:
        k = self._key(key)
        try:
            self._call("head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=k))
        except FileNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        k = self._key(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=k))

    def list(self, prefix: str) -> Iterator[StoredObject]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        pages = self._call(
            "list",
            prefix,
            lambda: self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ),
        )
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in pages:
            for item in page.get("Contents", []):
                yield StoredObject(
                    item["Key"][strip:], int(item["Size"]), item["LastModified"].timestamp()
                )


def open_store(url: str | None = None) -> Store:
    """The store ``url`` names (default: :func:`store_url`), one per process and URL."""
    return _open(url or store_url())


@functools.cache
def _open(url: str) -> Store:
    if url.startswith(S3_SCHEME):
        return S3Store(url)
    if "://" in url:
        raise StoreError(f"TOWLINE_STORE={url!r}: expected a folder or s3://bucket/prefix")
    return FolderStore(Path(url))
