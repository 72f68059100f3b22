"""Graph JSON <-> protobuf messages whose field names are the snake_case of Graph's property names."""

from __future__ import annotations

import functools
from datetime import datetime, timezone

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.enums import graph_numbers, to_graph

from .errors import bad_request

INT32 = (-(2**31), 2**31 - 1)
TIMESTAMP = "google.protobuf.Timestamp"


@functools.cache
def _fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    return {f.json_name: f for f in descriptor.fields}


def to_json(message: Message, graph_type: str, null_when_empty: frozenset[str] = frozenset()) -> dict:
    """Every property, Graph-named; enums by member name, timestamps ISO 8601 UTC."""
    out: dict = {"@odata.type": f"#microsoft.graph.{graph_type}"}
    for name, field in _fields(message.DESCRIPTOR).items():
        value = getattr(message, field.name)
        if field.message_type is not None:
            value = value.ToJsonString() if field.message_type.full_name == TIMESTAMP and message.HasField(field.name) else None
        elif field.enum_type is not None:
            value = to_graph(field.enum_type, value)
        elif name in null_when_empty and value == "":
            value = None
        out[name] = value
    return out


def from_json(body, message: Message, graph_type: str, ignore: frozenset[str] = frozenset({"id"})) -> list[str]:
    """Fills `message` from a Graph JSON object; returns the proto field names that were given.

    Unknown properties and values of the wrong type raise a 400 GraphError naming the property.
    """
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    given = []
    fields = _fields(message.DESCRIPTOR)
    for name, value in body.items():
        if name == "@odata.type":
            if not isinstance(value, str) or value.lstrip("#") != f"microsoft.graph.{graph_type}":
                raise bad_request(f"The @odata.type '{value}' is not microsoft.graph.{graph_type}.")
            continue
        if name.startswith("@") or "@odata." in name or name in ignore:
            continue
        field = fields.get(name)
        if field is None:
            raise bad_request(f"Property '{name}' does not exist on type 'microsoft.graph.{graph_type}'.")
        if value is not None:
            _set(message, field, name, value)
        given.append(field.name)
    return given


def _set(message: Message, field: FieldDescriptor, name: str, value) -> None:
    if field.message_type is not None and field.message_type.full_name == TIMESTAMP:
        getattr(message, field.name).FromDatetime(parse_datetime(value, name))
    elif field.enum_type is not None:
        members = graph_numbers(field.enum_type)
        if value not in members:
            raise bad_request(f"'{value}' is not a valid value for {name}; expected one of: {', '.join(members)}.")
        setattr(message, field.name, members[value])
    elif field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise bad_request(f"Property '{name}' must be a boolean.")
        setattr(message, field.name, value)
    elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
        if not isinstance(value, int) or isinstance(value, bool) or not INT32[0] <= value <= INT32[1]:
            raise bad_request(f"Property '{name}' must be an Int32 (a whole number from {INT32[0]} to {INT32[1]}).")
        setattr(message, field.name, value)
    elif field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise bad_request(f"Property '{name}' must be a string.")
        setattr(message, field.name, value)
    else:
        raise bad_request(f"Property '{name}' cannot be set.")


def parse_datetime(value, name: str) -> datetime:
    """ISO 8601 with an offset (or Z); a value without an offset is taken as UTC."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    raise bad_request(f"Property '{name}' must be an ISO 8601 date and time, e.g. 2026-01-31T08:00:00Z.")
