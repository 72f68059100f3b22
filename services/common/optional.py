"""String properties that are optional in Graph, per resource (Graph property names; a complex type's as
"applicationDetail/productName"). The one list both halves read: the services' $filter Field tables mark them
empty_is_null, the gateway renders them as null when empty (graphjson.to_json's null_when_empty).

Storage keeps '' for an absent string (NOT NULL columns: they are keyset sort keys), so '' and null are one
value here: a client sees null, `eq null`/`ne null` and `in (null, ...)` match it, a write of null stores ''
(and a PATCH sending back a fetched null changes nothing). A literal '' compares as against null (odata._nulled):
`eq ''` matches nothing, since no value is '' (Graph tells '' from null; we cannot, and a 400 would refuse a valid
query), `ne ''` everything, functions of an absent value are null. $orderby sorts absent values first ascending,
last descending (as NULLS FIRST would): the stored '' keeps the keyset paging exact.
"""

from dataclasses import replace

from .odata import Field

ELEVATION_REQUEST = frozenset({
    "reviewCompletedByUserId", "reviewCompletedByUserPrincipalName", "reviewerJustification",
    *(f"applicationDetail/{name}" for name in (
        "fileDescription", "publisherName", "publisherCert", "productName", "productInternalName",
        "productVersion")),
})
ELEVATION_EVENT = frozenset({
    "productName", "companyName", "fileVersion", "internalName", "fileDescription", "justification",
    "certificatePayload", "ruleId", "policyId", "policyName", "parentProcessName",
})
MANAGED_DEVICE = frozenset({
    "operatingSystem", "osVersion", "azureADDeviceId", "userPrincipalName", "userId", "serialNumber", "model",
    "manufacturer",
})
ROLE_ASSIGNMENT = frozenset({"resultMessage"})
SUBSCRIPTION = frozenset({"clientState", "applicationId"})


def marked(fields: dict[str, Field], optional: frozenset[str]) -> dict[str, Field]:
    """A $filter Field table with the `optional` properties (each one of its names) marked empty_is_null."""
    if missing := optional - fields.keys():
        raise ValueError(f"Not in the Field table: {sorted(missing)}")
    return {name: replace(field, empty_is_null=True) if name in optional else field for name, field in fields.items()}
