"""The pure rules of change notifications: subscriptions' resource, change types, URL, expiry, backoff, pausing,
and the notification's shape."""

import socket
import uuid
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address

import pytest

from services.common.odata import compile_filter
from services.requests.delivery import PublicResolver
from services.requests.notifications import (
    CHANGE_FIELDS,
    MAX_LIFETIME,
    DeliveryPolicy,
    SubscriptionError,
    client_state_problem,
    expiration_problem,
    notification,
    parse_change_types,
    parse_resource,
    pause_reason,
    retry_delay,
    url_problem,
)

NOW = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("text, expected", [
    ("deviceManagement/elevationRequests", ""),
    ("/deviceManagement/elevationRequests", ""),
    ("beta/devicemanagement/elevationrequests", ""),
    ("deviceManagement/elevationRequests?$filter=status eq 'pending'", "status eq 'pending'"),
    ("deviceManagement/elevationRequests?filter=deviceName eq 'X'", "deviceName eq 'X'"),
])
def test_resources_and_their_filter(text, expected):
    assert parse_resource(text) == expected


@pytest.mark.parametrize("text, message", [
    ("deviceManagement/managedDevices", "Unsupported resource"),
    ("", "Unsupported resource"),
    ("deviceManagement/elevationRequests/123", "Unsupported resource"),
    ("deviceManagement/elevationRequests?$select=id", "$filter and nothing else"),
])
def test_other_resources_are_refused(text, message):
    with pytest.raises(SubscriptionError, match=message.replace("$", r"\$")):
        parse_resource(text)


def test_change_types_are_checked_deduplicated_and_ordered():
    assert parse_change_types("updated, created,updated") == ["created", "updated"]
    assert parse_change_types("deleted") == ["deleted"]
    for bad in ("", " , ", "created,moved", "Created"):
        with pytest.raises(SubscriptionError):
            parse_change_types(bad)


@pytest.mark.parametrize("url, ok, in_dev", [
    ("https://hooks.contoso.example/epm", True, True),
    ("https://8.8.8.8/x", True, True),
    ("https://10.0.0.5:8443/x", False, True),        # private
    ("https://169.254.169.254/latest", False, True),  # link-local: cloud metadata
    ("https://127.0.0.1/x", False, True),
    ("https://[::1]/x", False, True),
    ("https://[::127.0.0.1]/x", False, True),       # IPv4-compatible
    ("https://[64:ff9b::7f00:1]/x", False, True),   # NAT64
    ("https://localhost/x", False, True),
    ("https://api.localhost/x", False, True),
    ("https://100.64.0.1/x", False, True),           # shared address space
    ("http://hooks.contoso.example/epm", False, True),
    ("http://127.0.0.1:8080/x", False, True),
    ("ftp://host/x", False, False),
    ("https:///nohost", False, False),
    ("https://host:99999/x", False, False),
    ("not a url", False, False),
])
def test_notification_urls_are_https_to_public_addresses_unless_in_development(url, ok, in_dev):
    assert (url_problem(url, private_allowed=False) is None) is ok
    assert (url_problem(url, private_allowed=True) is None) is in_dev


def _teredo(server: str, client: IPv4Address) -> str:
    obfuscated = ~int(client) & 0xFFFF_FFFF
    return f"2001:0:{int(IPv4Address(server)) >> 16:x}:{int(IPv4Address(server)) & 0xFFFF:x}:8000:63bf:" \
           f"{obfuscated >> 16:x}:{obfuscated & 0xFFFF:x}"


# IPv6 addresses that a connection follows on to an IPv4 address
CARRIERS = {
    "IPv4-compatible": lambda v4: f"::{v4}",
    "IPv4-mapped": lambda v4: f"::ffff:{v4}",
    "NAT64": lambda v4: f"64:ff9b::{v4}",
    "local-use NAT64": lambda v4: f"64:ff9b:1::{v4}",
    "6to4": lambda v4: f"2002:{int(v4) >> 16:x}:{int(v4) & 0xFFFF:x}::1",
    "Teredo client": lambda v4: _teredo("65.54.227.120", v4),
    "Teredo server": lambda v4: _teredo(str(v4), IPv4Address("8.8.4.4")),
}


@pytest.mark.parametrize("form", CARRIERS)
@pytest.mark.parametrize("ipv4, public", [("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.9", False),
                                          ("169.254.169.254", False), ("8.8.8.8", True)])
def test_ipv6_addresses_are_judged_by_the_ipv4_address_they_carry(form, ipv4, public):
    address = CARRIERS[form](IPv4Address(ipv4))
    problem = url_problem(f"https://[{address}]/x", private_allowed=False)
    assert problem is None if public else "loopback, private or link-local" in problem, address


def test_the_rest_of_the_local_use_nat64_prefix_is_not_public():
    """Other prefix lengths put the IPv4 address elsewhere in 64:ff9b:1::/48: no reading of it is certain."""
    assert url_problem("https://[64:ff9b:1:ff::808:808]/x", private_allowed=False)
    assert url_problem("https://[64:ff9b:1::808:808]/x", private_allowed=False) is None


async def test_resolved_addresses_are_judged_by_the_same_rule():
    """What getaddrinfo answers (for these hosts: the addresses themselves) is filtered by public_host too."""
    resolver = PublicResolver()
    try:
        for host in ("::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:a00:1::1", _teredo(
                "65.54.227.120", IPv4Address("192.168.1.1"))):
            with pytest.raises(OSError, match="no public address"):
                await resolver.resolve(host, 443, socket.AF_INET6)
        found = await resolver.resolve("64:ff9b::808:808", 443, socket.AF_INET6)
        assert [a["host"] for a in found] == ["64:ff9b::808:808"]
    finally:
        await resolver.close()


def test_expiry_must_be_ahead_and_within_graphs_limit():
    assert expiration_problem(NOW + timedelta(minutes=1), NOW) is None
    assert expiration_problem(NOW + MAX_LIFETIME, NOW) is None
    assert "future" in expiration_problem(NOW, NOW)
    assert "4230 minutes" in expiration_problem(NOW + MAX_LIFETIME + timedelta(seconds=1), NOW)


def test_client_state_is_at_most_128_characters():
    assert client_state_problem("x" * 128) is None
    assert client_state_problem("x" * 129)


def test_backoff_doubles_to_a_cap_with_bounded_jitter():
    policy = DeliveryPolicy(first_retry=timedelta(seconds=2), longest_retry=timedelta(minutes=10))
    full = [retry_delay(n, policy, 1.0) for n in range(1, 12)]
    assert full[:4] == [timedelta(seconds=s) for s in (2, 4, 8, 16)]
    assert full[-1] == timedelta(minutes=10) and full == sorted(full)
    assert retry_delay(3, policy, 0.0) == timedelta(seconds=4)  # half of 8 s at the least
    assert retry_delay(3, policy, 7.0) == timedelta(seconds=8)  # a spread out of range is clamped


def test_delivery_pauses_only_after_enough_failures_and_says_why():
    policy = DeliveryPolicy(pause_after=3)
    assert pause_reason(2, "HTTP 500", policy) == ""
    reason = pause_reason(3, "HTTP 500", policy)
    assert "3 failed deliveries" in reason and "HTTP 500" in reason and "PATCH" in reason


def test_a_notification_carries_the_change_id_and_graph_shape():
    change = {"id": uuid.uuid4(), "operation": "Action", "resource_id": str(uuid.uuid4())}
    subscription = {"id": uuid.uuid4(), "expires_at": NOW, "client_state": "", "tenant_id": "t1"}
    body = notification(change, subscription)
    assert body["id"] == str(change["id"]) and body["changeType"] == "updated"
    assert body["clientState"] is None and body["subscriptionExpirationDateTime"] == "2026-12-01T12:00:00Z"
    assert body["resource"] == f"deviceManagement/elevationRequests/{change['resource_id']}"
    assert body["resourceData"]["id"] == change["resource_id"] and body["tenantId"] == "t1"
    assert notification(dict(change, operation="Create"), subscription)["changeType"] == "created"


def test_filters_run_on_the_changed_request_with_the_state_the_change_left():
    params: list = []
    sql = compile_filter("status eq 'approved' and deviceName eq 'PC-1'", CHANGE_FIELDS, params)
    assert "a.new_state" in sql and "r.device_name" in sql and params == ["approved", "PC-1"]


async def test_names_resolve_to_public_addresses_only():
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="no public address"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()
