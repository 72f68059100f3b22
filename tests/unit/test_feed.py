"""Feed cursors: opaque, URL-safe, exact, and only the ones the feed gives out."""

from __future__ import annotations

import base64
import uuid

import pytest

from services.common.feed import CursorError, Position

ID = uuid.UUID("0b5f6c1e-8d2a-4e3f-9a1b-2c3d4e5f6a7b")


def spelled(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


LAST = Position((1 << 64) - 1, uuid.UUID(int=(1 << 128) - 1))


@pytest.mark.parametrize("position", [Position(), Position(1, ID), LAST])
def test_a_cursor_gives_back_its_position(position):
    token = position.token()
    assert Position.parse(token) == position
    assert token.isascii() and not set(token) - set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_empty_cursor_is_the_start_of_the_feed():
    assert Position.parse("") == Position() == Position(0, uuid.UUID(int=0))


@pytest.mark.parametrize("token", [
    "junk", "!!!!", "MC4w!!", spelled("12"), spelled("12."), spelled(f"x.{ID.hex}"), spelled(f"-1.{ID.hex}"),
    spelled(f"{1 << 64}.{ID.hex}"), spelled(f"12.{ID.hex[:-1]}"), spelled(f"12.{ID}"), spelled(f" 12.{ID.hex}"),
    spelled(f"1_2.{ID.hex}"), spelled(f"12.{ID.hex.upper()}"), spelled(f"012.{ID.hex}"), Position(12, ID).token() + "=",
    Position(12, ID).token()[:-1], base64.urlsafe_b64encode(b"\xff\xfe.").decode(),
])
def test_anything_else_is_refused(token):
    with pytest.raises(CursorError, match="The cursor is not one this feed gave out."):
        Position.parse(token)

