"""The people of the e2e tests: signed-in users of a test's tenant, with or without an Intune role."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    oid: str
    upn: str
    headers: dict
