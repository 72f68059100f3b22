"""A tenant as a reviewer finds it on a Monday morning, for the console's browser tests and the README's screenshots:
people, managed devices, elevation requests in every state and a month of elevation events, all sent through the
gateway as devices, users and reviewers would send them."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

from tests import feed_data

from .people import Person
from .test_role_assignments import MANAGER, assign, auth

REQUESTS = "/beta/deviceManagement/elevationRequests"
DEVICES = "/beta/deviceManagement/managedDevices"
ELEVATIONS = "/beta/deviceManagement/privilegeManagementElevations"
TYPES = ("userConfirmedElevation", "supportApprovedElevation", "zeroTouchElevation", "unmanagedElevation")

# name, device, compliance, model
PEOPLE = [("adele.vance", "LAPTOP-ADELE", "compliant", "Surface Laptop 6"),
          ("alex.wilber", "LAPTOP-ALEX", "noncompliant", "ThinkPad X1 Carbon"),
          ("diego.siciliani", "DESKTOP-DIEGO", "compliant", "OptiPlex 7010"),
          ("lynne.robbins", "LAPTOP-LYNNE", "inGracePeriod", "EliteBook 840")]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file(name: str, path: str, publisher: str, product: str = "", version: str = "", hash_: str = "") -> dict:
    return {"fileName": name, "filePath": path, "publisherName": publisher, "productName": product,
            "productVersion": version, "fileHash": hash_ or sha256(path.lower())}


def malicious_driver() -> dict:
    sample = feed_data.driver_samples()["malicious"][0]
    name = sample.get("Filename") or sample.get("OriginalFilename") or "driver.sys"
    return file(name, rf"C:\Users\Public\Downloads\{name}", sample.get("Company") or "", sample.get("Product") or "",
                str(sample.get("ProductVersion") or ""), sample["SHA256"].lower())


CLEAN = file("7zFM.exe", r"C:\Program Files\7-Zip\7zFM.exe", "Igor Pavlov", "7-Zip", "24.08")
DUAL_USE = file("certutil.exe", r"C:\Windows\System32\certutil.exe", "Microsoft Windows",
                "Microsoft Windows Operating System", "10.0.22621.4111")
WIRESHARK = file("Wireshark-4.4.2-x64.exe", r"C:\Users\diego\Downloads\Wireshark-4.4.2-x64.exe",
                 "Wireshark Foundation", "Wireshark", "4.4.2")
PYTHON = file("python-3.13.1-amd64.exe", r"C:\Users\adele\Downloads\python-3.13.1-amd64.exe",
              "Python Software Foundation", "Python 3.13.1", "3.13.1150.0")
PROCDUMP = file("procdump64.exe", r"C:\Tools\Sysinternals\procdump64.exe", "Microsoft Corporation",
                "ProcDump", "11.0")


@dataclass
class Demo:
    people: dict[str, Person]                         # by short name
    devices: dict[str, str] = field(default_factory=dict)    # device name -> id
    requests: dict[str, dict] = field(default_factory=dict)  # by what they are -> the request as created
    elevations: list[dict] = field(default_factory=list)     # the events posted


def person(token, name: str) -> Person:
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    upn = f"{name}@contoso.example"
    return Person(oid, upn, auth(token(oid=oid, upn=upn)))


async def send(client, method: str, path: str, headers: dict, body: dict | None = None, status: int = 200) -> dict:
    async with client.request(method, path, headers=headers, json=body) as resp:
        assert resp.status == status, f"{method} {path}: {resp.status} {await resp.text()}"
        return await resp.json() if status != 204 else {}


async def request(client, demo: Demo, who: str, application: dict, justification: str) -> dict:
    name, device, *_ = next(p for p in PEOPLE if p[0] == who)
    body = {"requestedOnDeviceId": demo.devices[device], "deviceName": device,
            "requestJustification": justification, "applicationDetail": application}
    return await send(client, "POST", REQUESTS, demo.people[name].headers, body, 201)


async def decide(client, reviewer: Person, request_: dict, action: str, reason: str) -> dict:
    return await send(client, "POST", f"{REQUESTS}/{request_['id']}/{action}", reviewer.headers,
                      {"reviewerJustification": reason})


async def seed(client, token, admin: dict, *, elevations: int = 0) -> Demo:
    """The tenant of `token`: four users with their devices, a reviewer (megan.bowen, Endpoint Privilege Manager),
    requests pending (clean, dual-use, a malicious driver, unknown), approved, denied and revoked, and `elevations`
    events spread over the last 30 days (a fixed seed: the same month every run)."""
    names = [name for name, *_ in PEOPLE] + ["megan.bowen"]
    demo = Demo(people={name: person(token, name) for name in names})
    intune = auth(token())  # Intune itself: registers the devices and reports their elevations
    await assign(client, admin, demo.people["megan.bowen"].oid, MANAGER)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for name, device, compliance, model in PEOPLE:
        body = {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, device)), "deviceName": device, "operatingSystem": "Windows",
                "osVersion": "10.0.22631.4602", "complianceState": compliance, "model": model,
                "userPrincipalName": demo.people[name].upn, "userId": demo.people[name].oid,
                "lastSyncDateTime": (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z")}
        demo.devices[device] = (await send(client, "POST", DEVICES, intune, body, 201))["id"]
    megan = demo.people["megan.bowen"]
    demo.requests["approved"] = await request(client, demo, "adele.vance", PYTHON, "Python for the data course")
    await decide(client, megan, demo.requests["approved"], "approve", "Approved for the course; standard tool.")
    demo.requests["denied"] = await request(client, demo, "alex.wilber", PROCDUMP, "App keeps crashing, need a dump")
    await decide(client, megan, demo.requests["denied"], "deny", "Dumps of LSASS are a credential theft risk.")
    demo.requests["revoked"] = await request(client, demo, "lynne.robbins", WIRESHARK, "Debug the printer network")
    await decide(client, megan, demo.requests["revoked"], "approve", "OK for today.")
    await decide(client, megan, demo.requests["revoked"], "revoke", "The device fell out of compliance.")
    demo.requests["unknown"] = await request(client, demo, "diego.siciliani", WIRESHARK,
                                             "Capture traffic of the lab's PLCs for the vendor")
    demo.requests["dual-use"] = await request(client, demo, "lynne.robbins", DUAL_USE,
                                              "Renew the VPN certificate the helpdesk sent")
    demo.requests["malicious"] = await request(client, demo, "alex.wilber", malicious_driver(),
                                               "Driver for the new RGB keyboard")
    demo.requests["clean"] = await request(client, demo, "adele.vance", CLEAN, "Unpack the archive from the auditor")
    rng = random.Random(8)
    files = [CLEAN, PYTHON, DUAL_USE, WIRESHARK, PROCDUMP, CLEAN, CLEAN, PYTHON]
    month = now - datetime.combine((now - timedelta(days=29)).date(), time(), timezone.utc)  # 30 calendar days (UTC)
    for ago in rng.sample(range(int(month.total_seconds())), elevations):  # distinct times: distinct events
        name, device, *_ = rng.choice(PEOPLE)
        app = rng.choice(files)
        at = now - timedelta(seconds=ago)
        demo.elevations.append({
            "deviceId": demo.devices[device], "deviceName": device, "upn": demo.people[name].upn,
            "eventDateTime": at.isoformat().replace("+00:00", "Z"),
            "elevationType": rng.choices(TYPES, weights=(6, 2, 3, 1))[0], "userType": "azureAd",
            "processType": "parent", "hash": app["fileHash"], "filePath": app["filePath"],
            "productName": app["productName"], "companyName": app["publisherName"]})
    if demo.elevations:  # as a device fleet reports them: one batch
        stored = await send(client, "POST", f"{ELEVATIONS}/ingest", intune, {"value": demo.elevations})
        assert (stored["inserted"], stored["rejected"]) == (len(demo.elevations), []), stored
    return demo
