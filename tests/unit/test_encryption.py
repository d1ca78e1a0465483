"""The encryption codec and its keys file, on real payloads from towline's converter."""

from __future__ import annotations

import base64
import secrets
import zlib
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from towline.config import ConfigError
from towline.state import RunState
from towline.worker import converter, encryption


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _keys(*ids: str) -> encryption.Keys:
    return encryption.parse_keys("\n".join(f"{i}: {_key()}" for i in ids), source="test keys")


async def test_payloads_round_trip_compressed_then_encrypted() -> None:
    keys = _keys("new", "old")
    conv = converter.encrypted_converter(keys)
    big = {"log": "the same line again\n" * 500}
    small = "a secret in a small payload"
    payloads = await conv.encode([big, small])
    assert [p.metadata["encoding"] for p in payloads] == [encryption.ENCODING] * 2
    assert payloads[0].metadata[encryption.KEY_ID] == b"new"
    assert payloads[0].metadata[encryption.COMPRESSION] == b"zlib"
    assert encryption.COMPRESSION not in payloads[1].metadata  # too small to gain from zlib
    assert len(payloads[0].data) < 1000  # compressed before encryption: 10 KB of repeats
    for p in payloads:
        assert b"secret" not in p.data
        assert b"same line" not in p.data
    assert await conv.decode(payloads, [dict, str]) == [big, small]


async def test_a_rotated_key_still_decrypts_and_a_missing_one_is_named() -> None:
    old = _keys("2026-01")
    sealed = await converter.encrypted_converter(old).encode(["kept"])
    rotated = encryption.parse_keys(
        f"2026-06: {_key()}\n2026-01: {base64.b64encode(old.secrets['2026-01']).decode()}",
        source="rotated",
    )
    assert await converter.encrypted_converter(rotated).decode(sealed, [str]) == ["kept"]
    new_only = _keys("2026-06")
    with pytest.raises(ConfigError, match="key '2026-01', which test keys does not hold"):
        await converter.encrypted_converter(new_only).decode(sealed, [str])


async def test_an_altered_payload_or_a_wrong_key_of_the_same_id_fails_loudly() -> None:
    keys = _keys("k")
    (sealed,) = await converter.encrypted_converter(keys).encode(["x"])
    tampered = Payload(metadata=sealed.metadata, data=sealed.data[:-1] + b"\0")
    with pytest.raises(ConfigError, match="does not decrypt"):
        await converter.encrypted_converter(keys).decode([tampered], [str])
    with pytest.raises(ConfigError, match="does not decrypt"):
        await converter.encrypted_converter(_keys("k")).decode([sealed], [str])


async def test_payloads_from_before_encryption_still_read() -> None:
    state = RunState(run_id="r", plan="p", status="running")
    plain = await converter.DATA_CONVERTER.encode([state])
    zipped = Payload(
        metadata={"encoding": b"binary/zlib"}, data=zlib.compress(plain[0].SerializeToString())
    )
    conv = converter.encrypted_converter(_keys("k"))
    assert await conv.decode([plain[0], zipped], [RunState, RunState]) == [state, state]


async def test_a_client_without_keys_says_what_it_needs() -> None:
    (sealed,) = await converter.encrypted_converter(_keys("k1")).encode(["x"])
    with pytest.raises(ConfigError, match="encrypted \\(key 'k1'\\): set TOWLINE_ENCRYPTION_KEYS"):
        await converter.DATA_CONVERTER.decode([sealed], [str])


async def test_failure_messages_are_encrypted_too() -> None:
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    conv = converter.encrypted_converter(_keys("k"))
    failure = Failure()
    await conv.encode_failure(ApplicationError("the secret diff", "details"), failure)
    assert "secret" not in failure.message
    assert b"secret" not in failure.SerializeToString()
    back = await conv.decode_failure(failure)
    assert str(back) == "the secret diff"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1 abc", "line 1: expected '<key id>: <base64 of 32 bytes>'"),
        (f"k 1: {_key()}", "line 1: key id 'k 1' may have only"),
        (f"k: {_key()}\nk: {_key()}", "line 2: key id 'k' appears twice"),
        ("k: not base64!", "line 1: key 'k' is not base64"),
        (
            f"k: {base64.b64encode(b'short').decode()}",
            "key 'k' is 5 bytes; AES-256-GCM keys are 32",
        ),
        ("# only a comment\n", "no keys in it"),
    ],
)
def test_a_bad_keys_file_is_named_by_its_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="keys file") as e:
        encryption.parse_keys(text, source="keys file")
    assert message in str(e.value)


def test_the_environment_chooses_the_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert converter.data_converter({}) is converter.DATA_CONVERTER
    path = tmp_path / "keys"
    path.write_text(f"a: {_key()}\n")
    env = {encryption.KEYS_ENV: str(path)}
    first = converter.data_converter(env)
    assert first is not converter.DATA_CONVERTER
    assert converter.data_converter(env) is first  # read once while the file is unchanged
    with pytest.raises(ConfigError, match="no such file"):
        converter.data_converter({encryption.KEYS_ENV: str(tmp_path / "missing")})
