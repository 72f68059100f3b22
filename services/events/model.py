"""Elevation events as data: validation, ids, and conversion between proto and table rows. Pure."""

from __future__ import annotations

import hashlib
import operator
import re
import uuid
from datetime import datetime, timedelta, timezone

from epm.events.v1 import elevation_event_service_pb2 as pb

from ..common.enums import graph_names, graph_numbers, to_graph
from ..common.odata import Field
from ..common.optional import ELEVATION_EVENT, marked
from ..common.timestamps import set_time

# Ids are UUIDv5 of "deviceId|eventDateTime" in this namespace: a re-sent event gets the same id.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:epm:privilegeManagementElevation")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_JUSTIFICATION = 256
MAX_FILE_PATH = 32_767
MAX_TEXT = 4096
FUTURE_SKEW_US = 86_400_000_000  # a day of clock skew
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAMESPACE_BYTES = ID_NAMESPACE.bytes
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant bits

ENUMS = {
    "elevation_type": pb.ElevationType.DESCRIPTOR,
    "user_type": pb.UserType.DESCRIPTOR,
    "process_type": pb.ProcessType.DESCRIPTOR,
}
TEXT = (
    "device_id", "device_name", "file_path", "upn", "product_name", "company_name", "file_version",
    "internal_name", "file_description", "justification", "hash", "certificate_payload", "rule_id",
    "policy_id", "policy_name", "parent_process_name",
)
# Table columns in storage order (after tenant_id); names are the proto field names.
COLUMNS = (
    "id", "device_id", "device_name", "event_date_time", "elevation_type", "file_path", "upn", "user_type",
    "product_name", "company_name", "file_version", "internal_name", "file_description", "justification",
    "hash", "certificate_payload", "result", "process_type", "rule_id", "policy_id", "policy_name",
    "parent_process_name", "system_initiated_elevation",
)
KEY_FIELDS = ("device_id", "event_date_time")  # the id derives from these: they cannot change
UPDATABLE = tuple(c for c in COLUMNS if c != "id" and c not in KEY_FIELDS)

_SHORT_TEXT = tuple(n for n in TEXT if n != "file_path")
_get_short_text = operator.attrgetter(*_SHORT_TEXT)
_get_stored = operator.attrgetter(*COLUMNS[1:])
_TIME, _HASH = COLUMNS.index("event_date_time") - 1, COLUMNS.index("hash") - 1
_get_enums = operator.attrgetter(*ENUMS)
_ENUM_NUMBERS = [(name, {0, *graph_names(enum)}) for name, enum in ENUMS.items()]
_ENUM_SLOTS = [(COLUMNS.index(n) - 1, graph_names(e), to_graph(e, 0)) for n, e in ENUMS.items()]


def graph_name(column: str) -> str:
    head, *rest = column.split("_")
    return head + "".join(word.title() for word in rest)


def _field(column: str) -> Field:
    if column in ENUMS:
        return Field(column, "enum", tuple(graph_names(ENUMS[column]).values()))
    if column == "event_date_time":
        return Field(column, "datetime")
    if column == "result":
        return Field(column, "int")
    if column == "system_initiated_elevation":
        return Field(column, "bool")
    if column == "id":
        return Field("id::text", "string", casefold=True)
    return Field(column, "string", casefold=column == "hash")


# What $filter and $orderby may name: Graph property -> column.
FIELDS: dict[str, Field] = marked({graph_name(c): _field(c) for c in COLUMNS}, ELEVATION_EVENT)


def micros(event: pb.ElevationEvent) -> int:
    """eventDateTime as whole microseconds since the Unix epoch (the stored precision)."""
    return event.event_date_time.seconds * 1_000_000 + event.event_date_time.nanos // 1000


def as_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def event_id(device_id: str, us: int) -> str:
    """UUIDv5(ID_NAMESPACE, lower(deviceId) + "|" + eventDateTime in epoch microseconds), in canonical form."""
    # SHA-1 because UUIDv5 is defined with it: an identifier, not a security use (and allowed under FIPS)
    d = hashlib.sha1(_NAMESPACE_BYTES + f"{device_id.lower()}|{us}".encode(), usedforsecurity=False).hexdigest()
    return f"{d[:8]}-{d[8:12]}-5{d[13:16]}-{_VARIANT[d[16]]}{d[17:20]}-{d[20:32]}"


def problem(event: pb.ElevationEvent, now_us: int, oldest_us: int) -> str | None:
    """Why `event` cannot be stored, or None when it is valid. Times are epoch microseconds."""
    if not event.device_id.strip():
        return "deviceId is required."
    if not event.HasField("event_date_time"):
        return "eventDateTime is required."
    us = micros(event)
    if us > now_us + FUTURE_SKEW_US:
        return f"eventDateTime {as_datetime(us).isoformat()} is in the future."
    if us < oldest_us:
        return (f"eventDateTime {as_datetime(us).isoformat()} is older than the retention period "
                f"(since {as_datetime(oldest_us).date()}).")
    if not SHA256.match(event.hash):
        return "hash must be a SHA-256 digest: 64 hexadecimal characters."
    if len(event.justification) > MAX_JUSTIFICATION:
        return f"justification must be at most {MAX_JUSTIFICATION} characters."
    if len(event.file_path) > MAX_FILE_PATH:
        return f"filePath must be at most {MAX_FILE_PATH} characters."
    texts = _get_short_text(event)
    if max(map(len, texts)) > MAX_TEXT:
        name = next(n for n, v in zip(_SHORT_TEXT, texts, strict=True) if len(v) > MAX_TEXT)
        return f"{graph_name(name)} must be at most {MAX_TEXT} characters."
    for (name, numbers), number in zip(_ENUM_NUMBERS, _get_enums(event), strict=True):
        if number not in numbers:
            return f"{graph_name(name)} has an unknown value ({number})."
    return None


def to_row(event: pb.ElevationEvent) -> tuple:
    """The stored row (without tenant) of a valid event, in COLUMNS order; assigns its id.

    The hot path of ingest: eventDateTime stays in epoch microseconds (store.INSERT converts it).
    """
    values = list(_get_stored(event))
    us = values[_TIME] = micros(event)
    values[_HASH] = values[_HASH].lower()
    for index, names, default in _ENUM_SLOTS:
        values[index] = names.get(values[index], default)
    return (event_id(values[0], us), *values)


def stored(event: pb.ElevationEvent, event_id: str) -> pb.ElevationEvent:
    """What reading `event` back after storing it gives (from_row), without reading it back."""
    out = pb.ElevationEvent()
    out.CopyFrom(event)
    out.id = event_id
    out.hash = event.hash.lower()
    out.event_date_time.nanos -= out.event_date_time.nanos % 1000
    for name, enum in ENUMS.items():
        if not getattr(out, name):
            setattr(out, name, min(graph_names(enum)))
    return out


def from_row(row) -> pb.ElevationEvent:
    event = pb.ElevationEvent()
    for name in COLUMNS:
        value = row[name]
        if name == "event_date_time":
            set_time(event.event_date_time, value)
        elif name in ENUMS:
            setattr(event, name, graph_numbers(ENUMS[name])[value])
        else:
            setattr(event, name, str(value) if name == "id" else value)
    return event


def month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=timezone.utc)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)


def months_between(first: datetime, last: datetime) -> set[datetime]:
    """The starts of every month from `first`'s to `last`'s, both included."""
    months, month = set(), month_start(first)
    while month <= last:
        months.add(month)
        month = next_month(month)
    return months
