"""Payload encryption: AES-256-GCM, keys by id, compression first.

``TOWLINE_ENCRYPTION_KEYS`` names a file of keys, one a line::

    # <key id>: <base64 of 32 random bytes>   (e.g. `openssl rand -base64 32`)
    2026-06: 3q2+7wQ...
    2026-01: Vb1n5dA...

The first key encrypts; every key decrypts, so keys rotate without losing what older
keys encrypted: put the new key first, keep the old ones below it until no history that
used them remains (the namespace's retention after the last run that used them closed).

Each payload is serialized, compressed (zlib, when that makes it smaller: ciphertext does
not compress, so it must happen before), and encrypted with a fresh 96-bit nonce; the key
id is authenticated with it. The encrypted payload's metadata says ``binary/encrypted``
and which key, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from towline.config import ConfigError

KEYS_ENV = "TOWLINE_ENCRYPTION_KEYS"
ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
COMPRESSION = "encryption-compression"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_COMPRESS_FROM = 128  # bytes: below this zlib's header outweighs what it saves


class UnreadablePayload(ConfigError):
    """A payload cannot be decrypted with the keys at hand."""


@dataclass(frozen=True, eq=False)  # compared by identity: one object per keys file read
class Keys:
    """Encryption keys by id; the first encrypts."""

    ids: tuple[str, ...]
    secrets: Mapping[str, bytes]
    source: str  # where they came from, for messages

    @property
    def current(self) -> str:
        return self.ids[0]


def parse_keys(text: str, *, source: str) -> Keys:
    """Keys from the text of a keys file; :class:`ConfigError` names the line that is wrong."""
    ids: list[str] = []
    secrets: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        key_id, sep, encoded = (part.strip() for part in line.partition(":"))
        if not sep or not key_id or not encoded:
            raise ConfigError(f"{where}: expected '<key id>: <base64 of 32 bytes>'")
        if not _KEY_ID.match(key_id):
            raise ConfigError(
                f"{where}: key id '{key_id}' may have only letters, digits, '.', '_' and '-'"
            )
        if key_id in secrets:
            raise ConfigError(f"{where}: key id '{key_id}' appears twice")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{where}: key '{key_id}' is not base64") from None
        if len(secret) != _KEY_BYTES:
            raise ConfigError(
                f"{where}: key '{key_id}' is {len(secret)} bytes; AES-256-GCM keys are "
                f"{_KEY_BYTES} (make one with `openssl rand -base64 32`)"
            )
        ids.append(key_id)
        secrets[key_id] = secret
    if not ids:
        raise ConfigError(f"{source}: no keys in it (one a line: '<key id>: <base64>')")
    return Keys(tuple(ids), secrets, source)


def load_keys(path: Path) -> Keys:
    source = f"{KEYS_ENV} ({path})"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read it: {e}") from None
    return parse_keys(text, source=source)


_cache: dict[tuple[str, int, int], Keys] = {}


def keys_from_environment(env: Mapping[str, str] = os.environ) -> Keys | None:
    """The keys ``TOWLINE_ENCRYPTION_KEYS`` names, or None when it is not set."""
    named = env.get(KEYS_ENV)
    if not named:
        return None
    path = Path(named)
    try:
        st = path.stat()
    except OSError:
        return load_keys(path)  # raises with the reason
    stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if stamp not in _cache:
        _cache[stamp] = load_keys(path)
    return _cache[stamp]


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def refuse_encrypted(payload: Payload) -> None:
    """For a client without keys: say what it needs rather than fail to parse ciphertext."""
    key_id = payload.metadata.get(KEY_ID, b"?").decode(errors="replace")
    raise UnreadablePayload(
        f"a payload is encrypted (key '{key_id}'): set {KEYS_ENV} to the keys file the workers use"
    )


class EncryptionCodec(PayloadCodec):
    """Compress, then encrypt every payload; decrypt with the key each payload names.

    Payloads that are not encrypted (written before encryption was turned on) are left
    to ``fallback``, so runs started before still read.
    """

    def __init__(self, keys: Keys, fallback: PayloadCodec | None = None) -> None:
        self._keys = keys
        self._aead = {key_id: AESGCM(secret) for key_id, secret in keys.secrets.items()}
        self._fallback = fallback

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self._keys.current
        aead = self._aead[key_id]
        out = []
        for p in payloads:
            data = p.SerializeToString()
            metadata = {"encoding": ENCODING, KEY_ID: key_id.encode()}
            if len(data) >= _COMPRESS_FROM:
                packed = zlib.compress(data, 1)
                if len(packed) < len(data):
                    data = packed
                    metadata[COMPRESSION] = b"zlib"
            nonce = os.urandom(_NONCE_BYTES)
            sealed = aead.encrypt(nonce, data, key_id.encode())
            out.append(Payload(metadata=metadata, data=nonce + sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out: list[Payload] = []
        plain: list[tuple[int, Payload]] = []
        for p in payloads:
            if is_encrypted(p):
                out.append(self._open(p))
            else:
                plain.append((len(out), p))
                out.append(p)
        if plain and self._fallback is not None:
            decoded = await self._fallback.decode([p for _, p in plain])
            for (index, _), p in zip(plain, decoded, strict=True):
                out[index] = p
        return out

    def _open(self, p: Payload) -> Payload:
        key_id = p.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._aead.get(key_id)
        if aead is None:
            raise UnreadablePayload(
                f"a payload is encrypted with key '{key_id}', which {self._keys.source} "
                f"does not hold (it has: {', '.join(self._keys.ids)}); add that key back"
            )
        nonce, sealed = p.data[:_NONCE_BYTES], p.data[_NONCE_BYTES:]
        try:
            data = aead.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise UnreadablePayload(
                f"a payload encrypted with key '{key_id}' does not decrypt with the key of "
                f"that id in {self._keys.source}: it is not the key it was encrypted with, "
                "or the payload was altered"
            ) from None
        if p.metadata.get(COMPRESSION) == b"zlib":
            data = zlib.decompress(data)
        return Payload.FromString(data)
