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
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, DataConverter, PayloadCodec

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
        return [
            Payload.FromString(zlib.decompress(p.data))
            if p.metadata.get("encoding") == _ZLIB
            else p
            for p in payloads
        ]


DATA_CONVERTER = DataConverter(payload_converter_class=_Payloads, payload_codec=_CompressLarge())
