"""InfluxDB line protocol for unified minutes and pipeline status (pure functions, no I/O).

One encoder serves every back end (v1 ``/write`` and the v2 client). Points carry second
precision; unified rows are stamped with the start of their minute, so a re-written row (a replay
or a revision) lands on the same series and timestamp and overwrites: writes are idempotent.

Field types never change for a field name, whatever the value: the unified contract decides them
once (``int`` fields are written with the ``i`` suffix, ``float`` fields always as floats, the
quality flags both as the integer bitmask ``quality_flags`` and as the string ``quality``). Missing
values (None) are left out of the point, as InfluxDB has no null.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Final

from pydantic import AwareDatetime, BaseModel

from schemas.models import PipelineStatus, UnifiedMinute

#: Measurement of the unified per-station-minute rows.
UNIFIED_MEASUREMENT: Final = "unified"
#: Measurement of the pipeline status messages.
STATUS_MEASUREMENT: Final = "pipeline_status"
#: Separator of the readable quality flags in the ``quality`` string field (and in the files).
QUALITY_SEPARATOR: Final = ";"


class FieldKind(Enum):
    """How a contract field is written."""

    TAG = "tag"
    TIME = "time"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"
    STRING_LIST = "string_list"
    EPOCH_S = "epoch_s"  #: a datetime other than the point's time: ``<name>_s`` integer seconds
    SKIP = "skip"


def _kind_of(annotation: Any) -> FieldKind:
    """The kind of a field from its annotation (``X | None`` counts as ``X``)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = {_kind_of(a) for a in args if a is not type(None)}
        if len(kinds) != 1:
            raise TypeError(f"no single line-protocol type for {annotation!r}")
        return kinds.pop()
    if typing.get_origin(annotation) is list and args == (str,):
        return FieldKind.STRING_LIST
    if typing.get_origin(annotation) is typing.Literal:
        return FieldKind.STRING
    simple = {
        bool: FieldKind.BOOL,
        int: FieldKind.INT,
        float: FieldKind.FLOAT,
        str: FieldKind.STRING,
    }
    if annotation in simple:
        return simple[annotation]
    if annotation in (datetime, AwareDatetime):
        return FieldKind.TIME
    raise TypeError(f"no line-protocol type for {annotation!r}")


def field_kinds(
    model: type[BaseModel], tags: Iterable[str], time_field: str = "time"
) -> dict[str, FieldKind]:
    """How each field of a contract is written: tag, time, skipped or a typed field.

    Parameters
    ----------
    model : type[BaseModel]
        The contract.
    tags : Iterable[str]
        Low-cardinality fields written as tags.
    time_field : str
        The field holding the point's time.

    Returns
    -------
    dict[str, FieldKind]
        Field name -> kind, in the contract's order.
    """
    tag_set = set(tags)
    kinds: dict[str, FieldKind] = {}
    for name, info in model.model_fields.items():
        if name == "schema_version":
            kinds[name] = FieldKind.SKIP
        elif name in tag_set:
            kinds[name] = FieldKind.TAG
        elif name == time_field:
            kinds[name] = FieldKind.TIME
        else:
            kind = _kind_of(info.annotation)
            kinds[name] = FieldKind.EPOCH_S if kind is FieldKind.TIME else kind
    return kinds


#: Unified rows: station is the only tag.
UNIFIED_KINDS: Final = field_kinds(UnifiedMinute, tags=("station",))
#: Status: who reports what about which station and source (all low-cardinality).
STATUS_KINDS: Final = field_kinds(
    PipelineStatus, tags=("service", "instance", "kind", "station", "source")
)


def escape_key(text: str) -> str:
    """Escape a measurement, tag key, tag value or field key (commas, equals, spaces)."""
    return (
        text.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def escape_string(text: str) -> str:
    """Escape a string field value (to be put between double quotes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _field_value(kind: FieldKind, value: Any) -> str | None:
    if kind is FieldKind.FLOAT:
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    if kind is FieldKind.INT:
        return f"{int(value)}i"
    if kind is FieldKind.EPOCH_S:
        return f"{int(value.timestamp())}i"
    if kind is FieldKind.BOOL:
        return "true" if value else "false"
    if kind is FieldKind.STRING_LIST:
        return f'"{escape_string(QUALITY_SEPARATOR.join(value))}"'
    return f'"{escape_string(str(value))}"'


def encode_point(
    measurement: str,
    values: Mapping[str, Any],
    kinds: Mapping[str, FieldKind],
    *,
    timestamp_s: int,
) -> str | None:
    """One line of line protocol, or None if no field has a value.

    Parameters
    ----------
    measurement : str
        Measurement name.
    values : Mapping[str, Any]
        Field name -> value (None = missing, left out).
    kinds : Mapping[str, FieldKind]
        How each name is written (see :func:`field_kinds`); names not listed are ignored.
    timestamp_s : int
        Point time. [s since epoch, UTC]
    """
    tags = sorted(  # sorted tag keys: InfluxDB's fastest path
        (name, str(values[name]))
        for name, kind in kinds.items()
        if kind is FieldKind.TAG and values.get(name) not in (None, "")
    )
    fields = []
    for name, kind in kinds.items():
        if kind in (FieldKind.TAG, FieldKind.TIME, FieldKind.SKIP) or values.get(name) is None:
            continue
        encoded = _field_value(kind, values[name])
        if encoded is not None:
            key = f"{name}_s" if kind is FieldKind.EPOCH_S else name
            fields.append(f"{escape_key(key)}={encoded}")
    if not fields:
        return None
    head = ",".join(
        [escape_key(measurement), *(f"{escape_key(k)}={escape_key(v)}" for k, v in tags)]
    )
    return f"{head} {','.join(fields)} {timestamp_s}"


def minute_timestamp_s(time: datetime) -> int:
    """Start of the minute holding ``time``. [s since epoch, UTC]"""
    seconds = int(time.timestamp())
    return seconds - seconds % 60


def encode_unified(row: BaseModel) -> str | None:
    """The line of one unified minute (measurement ``unified``, tag ``station``)."""
    values = dict(row)
    return encode_point(
        UNIFIED_MEASUREMENT, values, UNIFIED_KINDS, timestamp_s=minute_timestamp_s(values["time"])
    )


def encode_status(status: PipelineStatus) -> str | None:
    """The line of one status message (measurement ``pipeline_status``), stamped at its second."""
    values = dict(status)
    return encode_point(
        STATUS_MEASUREMENT, values, STATUS_KINDS, timestamp_s=int(status.time.timestamp())
    )
