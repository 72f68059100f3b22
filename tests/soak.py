"""Mixed Graph traffic through a gateway for a bounded time, every acknowledged write recorded and checked after.

`soak(url, mint, seconds)` runs `clients` closed-loop workers, each a device user who reports elevations and asks
for approvals, a reviewer who reads and decides them and a reader who lists, counts and looks up reputations, plus a few
deliberate errors (unknown ids, a bad $filter). `verify` reads every acknowledged write back. Used by
tests/faults/test_soak.py (seconds) and bench/soak.py (minutes).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from tests.claims import ROLE_ADMIN

ELEVATION_TYPES = ("userConfirmedElevation", "supportApprovedElevation", "zeroTouchElevation")
EVENTS = "/beta/deviceManagement/privilegeManagementElevations"
REQUESTS = "/beta/deviceManagement/elevationRequests"
REPUTATION = "/beta/security/fileReputations"
ASSIGNMENTS = "/beta/privilegedRoleAssignments"
MANAGER = "7f2d6a3c-0b1e-4c5d-9e8f-100000000001"
CONFIG_WRITE = "DeviceManagementConfiguration.ReadWrite.All"
DECISIONS = {"approve": "approved", "deny": "denied", "revoke": "revoked"}
MIB = 1024 * 1024


@dataclass
class Tally:
    """What the traffic did: calls by kind and status, answers nobody asked for, and the acknowledged writes."""

    calls: Counter = field(default_factory=Counter)        # (kind, status)
    unexpected: list = field(default_factory=list)         # (kind, status, body)
    events: dict[str, str] = field(default_factory=dict)   # id -> deviceId
    requests: dict[str, str] = field(default_factory=dict)  # id -> status it was last acknowledged in
    headers: dict[str, dict] = field(default_factory=dict)  # who -> Authorization header

    @property
    def tried(self) -> int:
        return sum(self.calls.values())

    def summary(self) -> str:
        kinds = Counter()
        for (kind, _), n in self.calls.items():
            kinds[kind] += n
        return ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def event_body(device: str, when: str, n: int) -> dict:
    return {"deviceId": device, "deviceName": device.upper(), "eventDateTime": when,
            "elevationType": random.choice(ELEVATION_TYPES),
            "filePath": rf"C:\Tools\tool{n % 50}.exe", "upn": "soak@contoso.example", "userType": "azureAd",
            "hash": sha(f"tool{n % 50}"), "result": 0, "processType": "parent", "justification": "soak"}


def request_body(device: str, n: int) -> dict:
    return {"requestedOnDeviceId": device, "deviceName": device.upper(), "requestJustification": "soak",
            "applicationDetail": {"fileHash": sha(f"tool{n % 50}"), "fileName": f"tool{n % 50}.exe",
                                  "filePath": r"C:\Tools", "publisherName": "Contoso"}}


class Worker:
    def __init__(self, session: aiohttp.ClientSession, headers: dict[str, dict], tally: Tally, index: int):
        self.session, self.headers, self.tally, self.index = session, headers, tally, index
        self.n = 0
        self.pending: list[str] = []
        self.approved: list[str] = []

    async def call(self, kind: str, method: str, path: str, who: str, expected: tuple[int, ...], **kwargs):
        async with self.session.request(method, path, headers=self.headers[who], **kwargs) as resp:
            body = await resp.read()
            self.tally.calls[kind, resp.status] += 1
            if resp.status not in expected:
                self.tally.unexpected.append((kind, resp.status, body[:300].decode(errors="replace")))
                return None
            return await resp.json(content_type=None) if body else {}

    async def step(self) -> None:
        self.n += 1
        device = f"soak-{self.index}-{self.n % 40}"
        roll = random.random()
        if roll < 0.30:
            when = f"2026-11-{1 + self.n % 28:02d}T{self.index % 24:02d}:{self.n // 60 % 60:02d}:{self.n % 60:02d}Z"
            if made := await self.call("event", "POST", EVENTS, "device", (201,),
                                       json=event_body(device, when, self.n)):
                self.tally.events[made["id"]] = device
        elif roll < 0.42:
            await self.call("list", "GET", EVENTS, "reader", (200,),
                            params={"$filter": f"deviceId eq '{device}'", "$top": "10", "$count": "true"})
        elif roll < 0.47:
            await self.call("count", "GET", f"{EVENTS}/$count", "reader", (200,))
        elif roll < 0.60:
            if made := await self.call("create", "POST", REQUESTS, "user", (201,),
                                       json=request_body(f"soak-{self.index}-{self.n}", self.n)):
                self.tally.requests[made["id"]] = made["status"]
                self.pending.append(made["id"])
        elif roll < 0.72 and self.pending:
            await self.decide(self.pending.pop(0), random.choice(["approve", "approve", "deny"]))
        elif roll < 0.77 and self.approved:
            await self.decide(self.approved.pop(0), "revoke")
        elif roll < 0.87 and self.tally.requests:
            await self.call("get", "GET", f"{REQUESTS}/{random.choice(list(self.tally.requests))}", "reviewer", (200,))
        elif roll < 0.95:
            await self.call("reputation", "GET", f"{REPUTATION}/{sha(f'tool{self.n % 50}')}", "reader", (200,),
                            params={"fileName": f"tool{self.n % 50}.exe"})
        elif roll < 0.975:
            await self.call("deliberate", "GET", f"{REQUESTS}/{uuid.uuid4()}", "reviewer", (404,))
        else:
            await self.call("deliberate", "GET", EVENTS, "reader", (400,), params={"$filter": "deviceId eq"})

    async def decide(self, request_id: str, action: str) -> None:
        if done := await self.call(action, "POST", f"{REQUESTS}/{request_id}/{action}", "reviewer", (200,),
                                   json={"reviewerJustification": f"soak {action}"}):
            assert done["status"] == DECISIONS[action], done
            self.tally.requests[request_id] = done["status"]
            if action == "approve":
                self.approved.append(request_id)


def people(mint: Callable[..., str]) -> tuple[dict[str, dict], str]:
    """Headers for each role (one tenant), and the reviewer's user id."""
    reviewer = str(uuid.uuid4())
    tokens = {"device": mint(scopes=(), roles=[CONFIG_WRITE]),
              "user": mint(oid=str(uuid.uuid4()), upn="adele@contoso.example"),
              "reviewer": mint(oid=reviewer, upn="megan@contoso.example"),
              "reader": mint(oid=str(uuid.uuid4()), upn="lee@contoso.example"),
              "admin": mint(**ROLE_ADMIN)}
    headers = {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
    headers["reviewer"]["Prefer"] = "include-unknown-enum-members"  # reads a revoked request's status by name
    return headers, reviewer


async def soak(url: str, mint: Callable[..., str], seconds: float, clients: int = 8,
               between: Callable[[], object] | None = None) -> Tally:
    """Runs the mix for `seconds`; `between()` (e.g. an RSS sample) is called about once a second meanwhile."""
    headers, reviewer = people(mint)
    tally = Tally(headers=headers)
    async with aiohttp.ClientSession(base_url=url) as session:
        async with session.post(ASSIGNMENTS, headers=headers["admin"],
                                json={"userId": reviewer, "roleId": MANAGER}) as resp:
            assert resp.status == 201, await resp.text()
        deadline = time.monotonic() + seconds

        async def work(index: int) -> None:
            worker = Worker(session, headers, tally, index)
            while time.monotonic() < deadline:
                await worker.step()

        async def watch() -> None:
            while time.monotonic() < deadline:
                between()
                await asyncio.sleep(1)

        await asyncio.gather(*(work(i) for i in range(clients)), *([watch()] if between else []))
    return tally


async def verify(url: str, tally: Tally) -> int:
    """Reads back every acknowledged write; returns how many were checked. Raises on the first one missing."""
    checked = 0
    async with aiohttp.ClientSession(base_url=url, headers=tally.headers["reviewer"]) as session:
        async def check(path: str, key: str, expected: str) -> None:
            nonlocal checked
            async with session.get(path) as resp:
                assert resp.status == 200, (path, resp.status, await resp.text())
                assert (await resp.json())[key] == expected, path
            checked += 1

        items = [(f"{EVENTS}/{i}", "deviceId", d) for i, d in tally.events.items()]
        items += [(f"{REQUESTS}/{i}", "status", s) for i, s in tally.requests.items()]
        for start in range(0, len(items), 64):
            await asyncio.gather(*(check(*item) for item in items[start:start + 64]))
    return checked


def growth(samples: list[int]) -> float:
    """How much the resident memory of the last quarter of a run exceeds that of its second quarter (after
    warm-up), in bytes: a leak grows it with time, a warm cache does not."""
    quarter = max(1, len(samples) // 4)
    return statistics.mean(samples[-quarter:]) - statistics.mean(samples[quarter:2 * quarter])


