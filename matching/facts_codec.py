"""Listing facts as compact bytes: what ranking reads, then the long texts, compressed.

A catalogue keeps every listing's facts in memory. Pickled whole they took about 950 bytes a
listing (a gigabyte at a million listings), two thirds of it texts that only an explanation reads.
Here the facts that ranking reads (kind, title, tags, places, languages, the kind's attributes)
are `marshal`led as plain values, about 200 bytes, decoded in a few microseconds; the summary,
description and a scenario's problem and outcome follow, zlib-compressed (about 270 bytes), and
are decompressed only when asked for.
"""

import dataclasses
import marshal
import struct
import typing
import zlib
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

from matching.facts import ListingFacts, ScenarioFacts, attributes_class

# A decoded blob is only read back by the same marshal format (a snapshot of another Python
# version is rebuilt, not misread).
FORMAT = f"facts-1/marshal-{marshal.version}"

# The fields held compressed, per class; every other field is read by ranking.
_TEXT_FIELDS: dict[type, tuple[str, ...]] = {
    ListingFacts: ("summary", "description"),
    ScenarioFacts: ("problem_statement", "desired_outcome"),
}
_LENGTH = struct.Struct("<I")

Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def encode(facts: ListingFacts) -> bytes:
    """The facts as bytes for `decode`."""
    attributes = facts.attributes
    texts = _texts(facts) + _texts(attributes)
    head = marshal.dumps((_plain(facts), _plain(attributes)))
    tail = zlib.compress(marshal.dumps(texts)) if any(texts) else b""
    return _LENGTH.pack(len(head)) + head + tail


def decode(blob: bytes, *, texts: bool = True) -> ListingFacts:
    """The facts encoded in a blob.

    Args:
        blob: from `encode`.
        texts: False leaves the summary, description and a scenario's problem statement and
            desired outcome empty: all ranking needs, without decompressing anything.
    """
    (length,) = _LENGTH.unpack_from(blob)
    head = memoryview(blob)[_LENGTH.size : _LENGTH.size + length]
    listing_values, attribute_values = marshal.loads(head)
    attributes_type = attributes_class(listing_values[_KIND_POSITION])
    tail = memoryview(blob)[_LENGTH.size + length :] if texts else b""
    stored: tuple[str, ...] = marshal.loads(zlib.decompress(tail)) if tail else ()
    split = len(_TEXT_FIELDS[ListingFacts])
    listing_texts, attribute_texts = stored[:split], stored[split:]
    attributes = _restore(attributes_type, attribute_values, attribute_texts)
    return _restore(ListingFacts, listing_values, listing_texts, attributes=attributes)


def _texts(instance: object) -> tuple[str, ...]:
    return tuple(getattr(instance, name) for name in _TEXT_FIELDS.get(type(instance), ()))


def _plain(instance: object) -> tuple[Any, ...]:
    """The instance's non-text field values as marshal-able values (attributes left out)."""
    cls: Any = type(instance)
    return tuple(encoder(getattr(instance, name)) for name, (encoder, _) in _codecs(cls).items())


def _restore(cls: type, values: tuple[object, ...], texts: tuple[str, ...], **extra: Any) -> Any:
    fields = {
        name: decoder(value)
        for (name, (_, decoder)), value in zip(_codecs(cls).items(), values, strict=True)
    }
    fields.update(zip(_TEXT_FIELDS.get(cls, ()), texts, strict=False))
    return cls(**fields, **extra)


@cache
def _codecs(cls: Any) -> dict[str, Codec]:
    """Per non-text field of a facts class (attributes excluded), its encoder and decoder."""
    hints = typing.get_type_hints(cls)
    skipped = {*_TEXT_FIELDS.get(cls, ()), "attributes"}
    return {
        field.name: _codec(hints[field.name])
        for field in dataclasses.fields(cls)
        if field.name not in skipped
    }


def _codec(hint: Any) -> Codec:
    types = set(typing.get_args(hint)) or {hint}
    if date in types:
        return _optional(date.toordinal), _optional(date.fromordinal)
    if Decimal in types:
        return _optional(str), _optional(Decimal)
    return _same, _same


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


# Where a listing's kind sits among its encoded values (decode needs it first).
_KIND_POSITION = list(_codecs(ListingFacts)).index("kind")
