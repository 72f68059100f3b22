"""Elevation events as data: validation, ids, and conversion between proto and table rows. Pure."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone

from epm.events.v1 import elevation_event_service_pb2 as pb

from ..common.enums import graph_names, graph_numbers, to_graph
from ..common.odata import Field

# Ids are UUIDv5 of "deviceId|eventDateTime" in this namespace: a re-sent event gets the same id.
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:epm:privilegeManagementElevation")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_JUSTIFICATION = 256
MAX_FILE_PATH = 32_767
MAX_TEXT = 4096
FUTURE_SKEW = timedelta(days=1)

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
    return Field(column, "string", casefold=column == "hash", empty_is_null=column == "justification")


# What $filter and $orderby may name: Graph property -> column.
FIELDS: dict[str, Field] = {graph_name(c): _field(c) for c in COLUMNS}


def event_id(device_id: str, at: datetime) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{device_id.lower()}|{at.astimezone(timezone.utc).isoformat()}"))


def event_time(event: pb.ElevationEvent) -> datetime:
    return event.event_date_time.ToDatetime(tzinfo=timezone.utc)


def problem(event: pb.ElevationEvent, now: datetime, oldest: datetime) -> str | None:
    """Why `event` cannot be stored, or None when it is valid."""
    if not event.device_id.strip():
        return "deviceId is required."
    if not event.HasField("event_date_time"):
        return "eventDateTime is required."
    at = event_time(event)
    if at > now + FUTURE_SKEW:
        return f"eventDateTime {at.isoformat()} is in the future."
    if at < oldest:
        return f"eventDateTime {at.isoformat()} is older than the retention period (since {oldest.date()})."
    if not SHA256.match(event.hash):
        return "hash must be a SHA-256 digest: 64 hexadecimal characters."
    if len(event.justification) > MAX_JUSTIFICATION:
        return f"justification must be at most {MAX_JUSTIFICATION} characters."
    if event.result < 0:
        return "result must be between 0 and 2147483647."
    for name in TEXT:
        limit = MAX_FILE_PATH if name == "file_path" else MAX_TEXT
        if len(getattr(event, name)) > limit:
            return f"{graph_name(name)} must be at most {limit} characters."
    for name, enum in ENUMS.items():
        number = getattr(event, name)
        if number and number not in graph_names(enum):
            return f"{graph_name(name)} has an unknown value ({number})."
    return None


def to_row(event: pb.ElevationEvent) -> tuple:
    """The stored row (without tenant) of a valid event; assigns its id."""
    at = event_time(event)
    values = {name: getattr(event, name) for name in COLUMNS[1:]}
    values["event_date_time"] = at
    values["hash"] = event.hash.lower()
    for name, enum in ENUMS.items():
        values[name] = to_graph(enum, values[name])
    values["id"] = event_id(event.device_id, at)
    return tuple(values[c] for c in COLUMNS)


def from_row(row) -> pb.ElevationEvent:
    event = pb.ElevationEvent()
    for name in COLUMNS:
        value = row[name]
        if name == "event_date_time":
            event.event_date_time.FromDatetime(value)
        elif name in ENUMS:
            setattr(event, name, graph_numbers(ENUMS[name])[value])
        else:
            setattr(event, name, str(value) if name == "id" else value)
    return event


def month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=timezone.utc)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=timezone.utc)
