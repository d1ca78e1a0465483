"""towline's data converter: pydantic JSON, without default values, large payloads zipped.

Every client towline makes (CLI, worker, scripts) uses :data:`DATA_CONVERTER`, so all
of them read what the others wrote.

- Fields equal to their default are left out of the JSON: a plan task is ``{"id": "t1",
  "tool": "echo"}`` rather than a dozen ``null``s (plans and states about 2-4x smaller,
  less for the server to store and the worker to parse). Reading fills the defaults back
  in, so a plain pydantic converter still reads these payloads.
- Payloads of :data:`COMPRESS_FROM` bytes or more are compressed (zlib): the plan of a
  10,000-task run is 1.7 MB of JSON, near Temporal's 2 MB payload limit, and 66 KB
  compressed. Smaller payloads stay plain JSON, readable in the Web UI.
- With ``TOWLINE_ENCRYPTION_KEYS`` set, every payload is compressed and encrypted instead
  (:mod:`towline.worker.encryption`), failure messages and stack traces included: clients
  get theirs from :func:`data_converter`. Payloads written before encryption was turned
  on still read.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError

from towline.errors import CATEGORIES
from towline.worker import encryption

COMPRESS_FROM = 64 * 1024
_ZLIB = b"binary/zlib"


class _CompactJSON(PydanticJSONPlainPayloadConverter):
    def to_payload(self, value: Any) -> Payload | None:
        return Payload(
            metadata={"encoding": self.encoding.encode()},
            data=self._schema_serializer.to_json(value, exclude_defaults=True),
        )


# The converters inside are stateless but for pydantic's cache of type adapters, so one
# set serves every instance: the SDK makes a new payload converter for each workflow
# activation (for its serialization context), and building these afresh each time cost
# about 8% of a busy worker's CPU, plus a TypeAdapter per payload it then decoded.
_CONVERTERS = tuple(
    _CompactJSON() if isinstance(c, PydanticJSONPlainPayloadConverter) else c
    for c in PydanticPayloadConverter().converters.values()
)


class _Payloads(CompositePayloadConverter):
    def __init__(self) -> None:
        super().__init__(*_CONVERTERS)


class _CompressLarge(PayloadCodec):
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(metadata={"encoding": _ZLIB}, data=zlib.compress(p.SerializeToString(), 1))
            if len(p.data) >= COMPRESS_FROM
            else p
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") == _ZLIB:
                p = Payload.FromString(zlib.decompress(p.data))
            elif encryption.is_encrypted(p):
                encryption.refuse_encrypted(p)
            out.append(p)
        return out


# Failures a person reads as a message: the outcome of a run or a workstream, an answer
# refused, a tool's expected failure. Their Python stack traces say nothing to that
# person (the Web UI opened a failed workstream's result on one), so they go without;
# an unexpected error ("system") keeps its trace for whoever debugs it.
_READ_AS_MESSAGES = frozenset(
    {
        "RunFailed",
        "WorkstreamFailed",
        "WorkstreamRolledBack",
        "ValueError",  # an update's validator refusing its input
        *(c for c in CATEGORIES if c != "system"),
    }
)


class _Messages(DefaultFailureConverter):
    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        kind = (
            exception.type if isinstance(exception, ApplicationError) else type(exception).__name__
        )
        if kind in _READ_AS_MESSAGES:
            exception.__traceback__ = None
        super().to_failure(exception, payload_converter, failure)


class _EncodedMessages(_Messages, DefaultFailureConverterWithEncodedAttributes):
    pass


DATA_CONVERTER = DataConverter(
    payload_converter_class=_Payloads,
    payload_codec=_CompressLarge(),
    failure_converter_class=_Messages,
)
"""The converter without encryption (what :func:`data_converter` gives when no keys are set)."""

_encrypted: dict[encryption.Keys, DataConverter] = {}


def data_converter(env: Mapping[str, str] = os.environ) -> DataConverter:
    """towline's converter, encrypting with the keys ``TOWLINE_ENCRYPTION_KEYS`` names if set.

    Raises :class:`~towline.config.ConfigError` for a keys file that cannot be used.
    """
    keys = encryption.keys_from_environment(env)
    if keys is None:
        return DATA_CONVERTER
    if keys not in _encrypted:
        _encrypted[keys] = encrypted_converter(keys)
    return _encrypted[keys]


def encrypted_converter(keys: encryption.Keys) -> DataConverter:
    """The converter that encrypts with ``keys`` (failure messages moved into payloads)."""
    return DataConverter(
        payload_converter_class=_Payloads,
        payload_codec=encryption.EncryptionCodec(keys, fallback=_CompressLarge()),
        failure_converter_class=_EncodedMessages,
    )


def codec(keys: encryption.Keys | None) -> PayloadCodec:
    """The codec alone (for the codec server): decrypting and unzipping what it can."""
    if keys is None:
        return _CompressLarge()
    return encryption.EncryptionCodec(keys, fallback=_CompressLarge())
