"""Rules of change notifications, pure: what a subscription may say, what a notification looks like, and how
delivery backs off and gives up on an endpoint. The I/O is in delivery.py and subscriptions.py."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from ..common.odata import Field
from .store import FIELDS

RESOURCE = "deviceManagement/elevationRequests"
ODATA_TYPE = "#microsoft.graph.privilegeManagementElevationRequest"
MAX_LIFETIME = timedelta(minutes=4230)  # Graph's longest subscription lifetime for most resources
MAX_CLIENT_STATE = 128
# Graph change type -> the audit operations that are one
OPERATIONS = {"created": ("Create",), "updated": ("Patch", "Action"), "deleted": ("Delete",)}
CHANGE_TYPE = {op: change for change, ops in OPERATIONS.items() for op in ops}
# NAT64 prefixes with the IPv4 address in the last 32 bits. Elsewhere in the local-use prefix another prefix length
# puts it in other bits (RFC 6052): those addresses are not public.
NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/96"))
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
# A subscription's $filter runs on the changed request, its status being the state the change left it in.
CHANGE_FIELDS: dict[str, Field] = {
    name: replace(field, column="a.new_state", equals=None) if name == "status"
    else replace(field, column=f"r.{field.column}")
    for name, field in FIELDS.items()}


class SubscriptionError(ValueError):
    """A subscription that cannot be; the message says why, in Graph's words where Graph has them."""


def parse_resource(text: str) -> str:
    """The $filter of a subscription's resource ('' for none)."""
    path, _, query = text.strip().lstrip("/").partition("?")
    if path.lower().removeprefix("beta/") != RESOURCE.lower():
        raise SubscriptionError(f"Unsupported resource '{text}'; the supported resource is {RESOURCE}, "
                                "optionally with ?$filter=...")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if unknown := sorted(set(options) - {"$filter", "filter"}):
        raise SubscriptionError(f"The resource may have a $filter and nothing else, not {unknown[0]}.")
    return options.get("$filter", options.get("filter", ""))


def parse_change_types(text: str) -> list[str]:
    types = [t.strip() for t in text.split(",") if t.strip()]
    if not types:
        raise SubscriptionError("changeType is required: created, updated, deleted or a comma-separated list.")
    if bad := [t for t in types if t not in OPERATIONS]:
        raise SubscriptionError(f"'{bad[0]}' is not a valid changeType; expected created, updated or deleted.")
    return sorted(set(types), key=list(OPERATIONS).index)


def url_problem(url: str, private_allowed: bool) -> str | None:
    """Notification URLs are https to a public address (names are checked again when they resolve: see
    delivery.PublicResolver). `private_allowed` (development) also lets http, loopback and private addresses in."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return f"notificationUrl '{url}' is not a valid URL."
    if not host or parts.scheme not in ("https", "http"):
        return "notificationUrl must be an https URL."
    if private_allowed:
        return None
    if parts.scheme != "https":
        return "notificationUrl must be an https URL."
    if not public_host(host):
        return "notificationUrl must not point to a loopback, private or link-local address."
    return None


def public_host(host: str) -> bool:
    """False for localhost and for addresses that are not globally routable (an IPv6 address that carries IPv4
    ones: unless they all are); names are resolved elsewhere."""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name
    if address.version == 6 and (carried := embedded_ipv4(address)):
        return all(a.is_global for a in carried)
    return address.is_global and address not in LOCAL_NAT64


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses a connection to `address` goes on to: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible
    (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d, and the /96 of the local-use prefix), 6to4 (2002:ab:cd::), Teredo
    (its server and client); none for other addresses."""
    if address.ipv4_mapped or address.sixtofour:
        return (address.ipv4_mapped or address.sixtofour,)
    if address.teredo:
        return address.teredo
    if int(address) >> 32 == 0 or any(address in prefix for prefix in NAT64):
        return (ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF),)
    return ()


def expiration_problem(expires: datetime, now: datetime) -> str | None:
    if expires <= now:
        return "expirationDateTime must be in the future."
    if expires > now + MAX_LIFETIME:
        return (f"expirationDateTime must be at most {int(MAX_LIFETIME.total_seconds() // 60)} minutes "
                "from now.")
    return None


def client_state_problem(text: str) -> str | None:
    return f"clientState must be at most {MAX_CLIENT_STATE} characters." if len(text) > MAX_CLIENT_STATE else None


def notification(change, subscription) -> dict:
    """Graph's changeNotification for one change (a row of the audit trail) to one subscription. Its id is the
    change's: a redelivery carries the same one."""
    path = f"{RESOURCE}/{change['resource_id']}"
    return {
        "id": str(change["id"]),
        "subscriptionId": str(subscription["id"]),
        "subscriptionExpirationDateTime": subscription["expires_at"].isoformat().replace("+00:00", "Z"),
        "changeType": CHANGE_TYPE[change["operation"]],
        "clientState": subscription["client_state"] or None,
        "resource": path,
        "resourceData": {"@odata.type": ODATA_TYPE, "@odata.id": path, "id": change["resource_id"]},
        "tenantId": subscription["tenant_id"],
    }


@dataclass(frozen=True)
class DeliveryPolicy:
    batch: int = 100                           # notifications per POST
    timeout: float = 10.0                      # seconds an endpoint gets to answer (Graph: 3 s, then slow)
    first_retry: timedelta = timedelta(seconds=2)
    longest_retry: timedelta = timedelta(minutes=10)
    pause_after: int = 12                      # consecutive failures (about an hour of retries)
    poll: float = 0.05                         # seconds between looks for new changes, when there were none


def retry_delay(failures: int, policy: DeliveryPolicy, spread: float) -> timedelta:
    """Exponential backoff after `failures` consecutive failures, spread by a factor in [0.5, 1] (jitter: many
    subscriptions of one failed endpoint do not come back at the same instant)."""
    delay = min(policy.first_retry * 2 ** (failures - 1), policy.longest_retry)
    return delay * (0.5 + max(0.0, min(spread, 1.0)) / 2)


def pause_reason(failures: int, error: str, policy: DeliveryPolicy) -> str:
    """'' while delivery goes on; else why it stopped, for the subscriber to read."""
    if failures < policy.pause_after:
        return ""
    return (f"Paused after {failures} failed deliveries in a row; the last: {error}. "
            "Update the subscription (PATCH) to resume.")
