"""The shared store, as a folder and on a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3server import BUCKET, S3Server
from towline.store import FolderStore, S3Store, Store, StoreError, open_store


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "folder":
        return FolderStore(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return S3Store(f"s3://{BUCKET}/{tmp_path.name}")


def test_objects_round_trip_by_key(store: Store, tmp_path: Path) -> None:
    store.put("a/b/one.txt", b"first")
    store.put("a/b/one.txt", b"second")
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00\x01" * 50_000)
    store.put_file("a/two.bin", source)

    assert store.get("a/b/one.txt") == b"second"
    assert store.exists("a/two.bin")
    copy = tmp_path / "copy.bin"
    store.get_file("a/two.bin", copy)
    assert copy.read_bytes() == source.read_bytes()
    store.delete("a/two.bin")
    store.delete("a/two.bin")  # gone already: not an error
    assert not store.exists("a/two.bin")


def test_a_missing_object_is_file_not_found_naming_where(store: Store) -> None:
    with pytest.raises(FileNotFoundError, match="never/written"):
        store.get("never/written")
    assert not store.exists("never/written")


@pytest.mark.parametrize("key", ["../up", "a//b", "/abs", "a/./b", "a b"])
def test_keys_cannot_leave_their_place(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="bad store key"):
        store.put(key, b"x")


def test_an_unreachable_s3_service_is_a_store_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = S3Store("s3://nowhere/x")

    with pytest.raises(StoreError, match=r"store s3://nowhere/x: get k"):
        store.get("k")


def test_towline_store_chooses_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOWLINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TOWLINE_STORE", raising=False)
    assert open_store().location == str((tmp_path / "home" / "store").resolve())
    monkeypatch.setenv("TOWLINE_STORE", "s3://bucket/some/prefix/")
    s3 = open_store()
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    monkeypatch.setenv("TOWLINE_STORE", "ftp://elsewhere")
    with pytest.raises(StoreError, match="expected a folder or s3://bucket/prefix"):
        open_store()
