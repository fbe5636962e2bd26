"""Reading a batch body within its limits, and splitting it into items.

The body is read chunk by chunk as the client sends it: the bytes as sent and the bytes
after gzip decoding are counted while reading, so a 30 MB body or a gzip bomb is refused
with 413 once a limit is crossed and never sits in memory whole.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import orjson

from milepost_common.domain.ingest_batches.models import BatchSource
from milepost_common.domain.ingest_batches.validation import decode_item, without_lone_surrogates
from milepost_common.errors import (
    BatchTooLarge,
    MalformedBody,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)

MEDIA_TYPES = {
    "application/json": BatchSource.JSON,
    "application/x-ndjson": BatchSource.NDJSON,
    "application/ndjson": BatchSource.NDJSON,
}
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_DECODE_STEP = 1024 * 1024  # decoded bytes produced per step: bounds the copy beside `out`
# A non-blank NDJSON line from its first non-space byte (JSON ignores leading space). Found
# by scanning: blank lines cost no object, and at most one line more than a batch may hold
# is copied (splitting 40 MiB of "0\n" made 20 million objects, about 1 GB).
_NDJSON_LINE = re.compile(rb"\S[^\n]*")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int
    max_decoded_bytes: int
    max_items: int

    def __post_init__(self) -> None:
        # The decoder of bodies of tiny items (``_json_positions``) is made with the limits,
        # at start-up: ~90 ms and 4 MB at 10,000 items, not paid by the first such request.
        _bounded_envelope(self.max_items)


def batch_source(content_type: str | None) -> BatchSource:
    """The batch format a Content-Type names; raises UnsupportedMediaType (415) otherwise."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    source = MEDIA_TYPES.get(media)
    if source is None:
        raise UnsupportedMediaType(
            "Send application/json or application/x-ndjson (optionally gzip-encoded)."
        )
    return source


def is_gzip(content_encoding: str | None) -> bool:
    """True for gzip; identity (or none) is False; any other coding is a 415."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("gzip", "x-gzip"):
        return True
    if coding == "identity":
        return False
    raise UnsupportedMediaType("Only gzip content encoding is accepted.")


def _too_large(limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds {limit} bytes {what}.")


def check_declared_length(content_length: str | None, limits: BodyLimits) -> None:
    """Raises PayloadTooLarge for a body its Content-Length declares over the limit: nothing
    of it need be read to refuse it."""
    if content_length and content_length.isdigit() and int(content_length) > limits.max_bytes:
        raise _too_large(limits.max_bytes, "as sent")


async def read_body(chunks: AsyncIterator[bytes], *, gzip: bool, limits: BodyLimits) -> bytearray:
    """The decoded body; raises PayloadTooLarge as soon as either limit is crossed (a body
    declared too large is refused before, by :func:`check_declared_length`) and MalformedBody for
    a corrupt or truncated gzip stream."""
    received = 0
    out = bytearray()
    decoder = zlib.decompressobj(_GZIP_WBITS) if gzip else None
    async for chunk in chunks:
        received += len(chunk)
        if received > limits.max_bytes:
            raise _too_large(limits.max_bytes, "as sent")
        if decoder is None:
            out += chunk
            continue
        data = chunk
        try:
            while data:
                room = limits.max_decoded_bytes - len(out)
                # At most one byte more than fits: enough to see the limit crossed.
                out += decoder.decompress(data, min(room + 1, _DECODE_STEP))
                if len(out) > limits.max_decoded_bytes:
                    raise _too_large(limits.max_decoded_bytes, "decoded")
                data = decoder.unconsumed_tail
                if decoder.eof and decoder.unused_data:  # the next member of a multi-member gzip
                    data = decoder.unused_data
                    decoder = zlib.decompressobj(_GZIP_WBITS)
        except zlib.error:
            raise MalformedBody("The gzip stream is corrupt.") from None
    if decoder is not None and not decoder.eof:
        raise MalformedBody("The gzip stream is truncated.")
    return out


def without_bom(body: bytearray) -> bytearray:
    """The body without one leading UTF-8 byte order mark (RFC 8259 lets a parser ignore it;
    some writers, .NET's among them, add it). Removed in place: no copy of the body."""
    if body.startswith(_BOM):
        del body[: len(_BOM)]
    return body


def body_hash(source: BatchSource, body: bytes | bytearray) -> str:
    """What makes two requests "the same body" for an Idempotency-Key (decoded bytes)."""
    digest = hashlib.sha256(source.value.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def _positions_missing(message: str) -> ValidationFailed:
    return ValidationFailed(
        message, details=[{"loc": ["body", "positions"], "msg": message, "type": "missing"}]
    )


class _Envelope(msgspec.Struct):
    positions: list[msgspec.Raw] | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
# Decoded as a list, `{"positions": [0, 0, …]}` built one object per item before their number
# was checked: 1.4 GB for the 40 MiB decoded limit (a few KiB gzipped). A body with more
# commas than this many per item allowed is read into a struct of max_items + 1 fields
# instead, whose decoder skips any item beyond them without building it. Real items hold
# far fewer commas, so they keep the list (a fraction of the struct's cost when small).
_COMMAS_PER_ITEM = 64


@functools.lru_cache(maxsize=2)
def _bounded_envelope(max_items: int) -> msgspec.json.Decoder[Any]:
    fields = [(f"i{n}", msgspec.Raw, msgspec.Raw()) for n in range(max_items + 1)]
    items = msgspec.defstruct("Items", fields, array_like=True)
    envelope = msgspec.defstruct("BoundedEnvelope", [("positions", items | None, None)])
    return msgspec.json.Decoder(envelope)


def _json_positions(body: bytes | bytearray, max_items: int) -> list[Any] | None:
    """``positions`` as a list of each item's JSON; at most max_items + 1 of them."""
    commas = _COMMAS_PER_ITEM * max_items
    # A body shorter than that many bytes cannot hold them: most batches are not counted.
    if len(body) < commas or body.count(b",") < commas:
        return _ENVELOPE.decode(body).positions
    positions = _bounded_envelope(max_items).decode(body).positions
    if positions is None:
        return None
    return [raw for raw in msgspec.structs.astuple(positions) if raw]  # an absent item is empty


def _decoded_positions(body: bytes | bytearray, max_items: int) -> list[Any] | None:
    """``_json_positions``, or of the body with its lone surrogate escapes as U+FFFD (no
    parser takes the document otherwise: one truncated emoji would refuse the whole batch);
    None when ``positions`` is not a list; raises MalformedBody for a body that is not JSON."""
    try:
        return _json_positions(body, max_items)
    except msgspec.ValidationError:
        return None
    except (msgspec.DecodeError, RecursionError):  # RecursionError: nested too deep
        repaired = without_lone_surrogates(body)
        if repaired == body:
            raise MalformedBody() from None
    return _decoded_positions(repaired, max_items)


@dataclass(frozen=True, slots=True)
class ParsedItems:
    """The items in order (typed where well-formed) and each one's JSON as sent."""

    items: list[Any]
    raws: list[Any]


def parse_items(body: bytes | bytearray, source: BatchSource, max_items: int) -> ParsedItems:
    """The batch's items in order: JSON ``positions`` or the non-blank NDJSON lines (one
    that is not JSON becomes an item rejected as ``invalid_field``, not a failed request)."""
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedBody("The body is not UTF-8.") from None
    if source is BatchSource.NDJSON:
        lines = _NDJSON_LINE.finditer(body)
        raws: list[Any] = [line.group() for line in itertools.islice(lines, max_items + 1)]
        if not raws:
            raise _positions_missing("The body holds no positions.")
    else:
        positions = _decoded_positions(body, max_items)
        if positions is None:
            raise _positions_missing("`positions` must be a list of positions.")
        if not positions:
            raise _positions_missing("`positions` is empty.")
        raws = positions
    if len(raws) > max_items:
        raise BatchTooLarge(f"A batch holds at most {max_items} positions.")
    return ParsedItems([decode_item(raw) for raw in raws], raws)


def parse_json(body: bytes | bytearray) -> Any:
    """Raises MalformedBody (400) for a body that is not JSON (a lone surrogate escape reads
    as U+FFFD, as in a batch)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        repaired = without_lone_surrogates(body)
        if repaired == body:
            raise MalformedBody() from None
    return parse_json(repaired)


def parse_form(body: bytes | bytearray) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs, blank values kept."""
    return parse_qsl(bytes(body).decode("utf-8", "replace"), keep_blank_values=True)
