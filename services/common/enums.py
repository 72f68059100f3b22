"""Proto enums <-> Graph enum member names: ELEVATION_TYPE_ZERO_TOUCH_ELEVATION <-> "zeroTouchElevation"."""

from __future__ import annotations

import functools
import re

from google.protobuf.descriptor import EnumDescriptor


def _prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _camel(snake: str) -> str:
    head, *rest = snake.lower().split("_")
    return head + "".join(word.title() for word in rest)


@functools.cache
def graph_names(enum: EnumDescriptor) -> dict[int, str]:
    """Number -> Graph member name, for every value but *_UNSPECIFIED."""
    prefix = _prefix(enum)
    return {v.number: _camel(v.name.removeprefix(prefix)) for v in enum.values if v.number != 0}


@functools.cache
def graph_numbers(enum: EnumDescriptor) -> dict[str, int]:
    return {name: number for number, name in graph_names(enum).items()}


def to_graph(enum: EnumDescriptor, number: int) -> str:
    """Graph name of `number`; UNSPECIFIED maps to the first member, Graph's default."""
    names = graph_names(enum)
    return names.get(number) or names[min(names)]
