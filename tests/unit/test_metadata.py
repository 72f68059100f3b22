"""GET /beta/$metadata's CSDL, as generated: well-formed OData v4 EDMX in which every type named is declared, the
collections are those the router serves, the enums keep Graph's member order and the bound operations are the
routed ones, with their parameters."""

from __future__ import annotations

import enum
import importlib
import re
import xml.etree.ElementTree as ET  # nosec B405 # parses our own document

import pytest

from gateway import metadata, openapi

EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NS = "microsoft.graph"
PRIMITIVES = {"Edm.String", "Edm.Boolean", "Edm.Int32", "Edm.Int64", "Edm.DateTimeOffset", "Edm.Guid"}
REFERENCES = (("Property", "Type"), ("NavigationProperty", "Type"), ("Parameter", "Type"), ("ReturnType", "Type"),
              ("EntityType", "BaseType"), ("EntitySet", "EntityType"), ("Singleton", "Type"))


def schema_of(document: bytes) -> ET.Element:
    root = ET.fromstring(document)  # nosec B314 # our own document
    assert root.tag == EDMX + "Edmx" and root.get("Version") == "4.0"
    (schema,) = root.find(EDMX + "DataServices")
    assert schema.tag == EDM + "Schema" and schema.get("Namespace") == NS
    return schema


def declared(schema: ET.Element, *kinds: str) -> dict[str, ET.Element]:
    kinds = kinds or ("EntityType", "ComplexType", "EnumType")
    return {f"{NS}.{e.get('Name')}": e for kind in kinds for e in schema.findall(EDM + kind)}


def unresolved(document: bytes) -> list[str]:
    """Every type reference that names no primitive and no declared type."""
    schema = schema_of(document)
    types = declared(schema)
    missing = []
    for tag, attribute in REFERENCES:
        for element in schema.iter(EDM + tag):
            named = re.sub(r"^Collection\((.*)\)$", r"\1", element.get(attribute) or "")
            if named and named not in PRIMITIVES and named not in types:
                missing.append(f"{tag} {element.get('Name')}: {named}")
    return missing


def properties(schema: ET.Element, type_name: str) -> dict[str, str]:
    """Name -> type of a structured type's properties, its base types' included."""
    element = declared(schema)[type_name]
    inherited = properties(schema, element.get("BaseType")) if element.get("BaseType") else {}
    return inherited | {p.get("Name"): p.get("Type") for p in element.findall(EDM + "Property")}


@pytest.fixture(scope="module")
def schema() -> ET.Element:
    return schema_of(metadata.document())


def test_every_type_named_is_declared_and_the_check_finds_one_that_is_not():
    assert unresolved(metadata.document()) == []
    broken = metadata.document().replace(b'Type="microsoft.graph.auditActor"', b'Type="microsoft.graph.nowhere"')
    assert unresolved(broken) == ["Property actor: microsoft.graph.nowhere"]


def test_the_container_holds_the_routed_collections(schema):
    (container,) = schema.findall(EDM + "EntityContainer")
    assert container.get("Name") == "GraphService"
    entity_types = declared(schema, "EntityType")
    sets = {s.get("Name"): s.get("EntityType") for s in container.findall(EDM + "EntitySet")}
    assert sets == {"privilegedRoleAssignments": f"{NS}.privilegedRoleAssignment",
                    "privilegedRoles": f"{NS}.privilegedRole", "subscriptions": f"{NS}.subscription"}
    assert all(t in entity_types for t in sets.values())
    (singleton,) = container.findall(EDM + "Singleton")
    navigation = {n.get("Name"): n.get("Type") for n in entity_types[singleton.get("Type")]}
    assert navigation == {
        "elevationRequests": f"Collection({NS}.privilegeManagementElevationRequest)",
        "privilegeManagementElevations": f"Collection({NS}.privilegeManagementElevation)",
        "managedDevices": f"Collection({NS}.managedDevice)", "auditEvents": f"Collection({NS}.auditEvent)"}
    served = {f"{openapi.ROOT}/{name}" for name in sets} | {
        f"{openapi.DM}/{name}" for name in navigation}
    assert served == set(openapi.KEY_SYNTAX) - metadata.INTUNE_RBAC == set(metadata.ENTITIES)


def test_entities_have_the_key_and_the_graph_properties(schema):
    base = declared(schema, "EntityType")[f"{NS}.entity"]
    assert [r.get("Name") for r in base.iter(EDM + "PropertyRef")] == ["id"]
    request = properties(schema, f"{NS}.privilegeManagementElevationRequest")
    assert request["id"] == "Edm.String" and request["status"] == f"{NS}.elevationRequestState"
    assert request["applicationDetail"] == f"{NS}.elevationRequestApplicationDetail"
    assert request["requestCreatedDateTime"] == "Edm.DateTimeOffset"
    assert "etag" not in request and "reputation" not in request  # annotations, not properties
    assert properties(schema, f"{NS}.auditEvent")["resources"] == f"Collection({NS}.auditResource)"
    assert properties(schema, f"{NS}.privilegeManagementElevation")["result"] == "Edm.Int32"
    assert "delivery" not in properties(schema, f"{NS}.subscription")
    assert {"source", "lastSeenDateTime"}.isdisjoint(properties(schema, f"{NS}.managedDevice"))


def test_enums_have_graphs_members_in_graphs_order(schema):
    """The SDK's enums (generated from Graph's own $metadata) are the reference."""
    enums = declared(schema, "EnumType")
    assert len(enums) == 5
    for name, element in enums.items():
        simple = name.removeprefix(NS + ".")
        module = importlib.import_module("msgraph_beta.generated.models." + re.sub(r"(?<!^)(?=[A-Z])", "_",
                                                                                    simple).lower())
        sdk = next(v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, enum.Enum) and v.__module__ == module.__name__)
        assert [m.get("Name") for m in element] == [m.value for m in sdk], name
    assert [m.get("Name") for m in enums[f"{NS}.elevationRequestState"]][-3:] == [
        "unknownFutureValue", "revoked", "completed"]


def test_bound_operations_are_the_routed_ones(schema):
    entity_types = declared(schema, "EntityType")
    found = {}
    for kind in ("Action", "Function"):
        for element in schema.findall(EDM + kind):
            binding, *parameters = element.findall(EDM + "Parameter")
            assert element.get("IsBound") == "true" and binding.get("Name") == "bindingParameter"
            assert re.sub(r"^Collection\((.*)\)$", r"\1", binding.get("Type")) in entity_types
            named = [(p.get("Name"), p.get("Type")) for p in parameters]
            found[element.get("Name")] = (kind, binding.get("Type"), named,
                                          element.find(EDM + "ReturnType").get("Type"))
    request, assignment = f"{NS}.privilegeManagementElevationRequest", f"{NS}.privilegedRoleAssignment"
    for review in ("approve", "deny", "revoke"):
        assert found[review] == ("Action", request, [("reviewerJustification", "Edm.String")], request)
    assert found["getAllElevationRequests"] == ("Action", request, [], f"Collection({request})")
    assert found["my"] == ("Function", f"Collection({assignment})", [], f"Collection({assignment})")
    assert found["myPermissions"][3] == f"{NS}.epmPermissions"
    assert found["makePermanent"] == ("Action", assignment, [(n, "Edm.String") for n in (
        "reason", "ticketNumber", "ticketSystem")], assignment)
    assert found["makeEligible"] == ("Action", assignment, [], assignment)
    assert found["selfActivate"][1:] == (f"{NS}.privilegedRole", [(n, "Edm.String") for n in (
        "reason", "ticketNumber", "ticketSystem", "duration")], assignment)
    assert found["selfDeactivate"] == ("Action", f"{NS}.privilegedRole", [], assignment)
    assert "analyze" not in found and "summary" not in found and "ingest" not in found  # extensions
    assert "settings" not in found and "assignments" not in found  # navigations, not operations
    assert len(found) == 10


def test_the_service_document_lists_the_container():
    document = metadata.service_document("https://graph.example/beta")
    assert document["@odata.context"] == "https://graph.example/beta/$metadata"
    assert document["value"] == [{"name": "deviceManagement", "kind": "Singleton", "url": "deviceManagement"}] + [
        {"name": n, "kind": "EntitySet", "url": n} for n in ("privilegedRoleAssignments", "privilegedRoles",
                                                             "subscriptions")]


def test_both_and_only_they_are_open_and_in_the_openapi_document():
    assert metadata.ANONYMOUS == {"/beta", "/beta/$metadata"}  # what app.py lets through without a token
    paths = openapi.document()["paths"]
    assert paths[openapi.METADATA]["get"]["security"] == [] and paths[openapi.ROOT]["get"]["security"] == []
    assert list(paths[openapi.METADATA]["get"]["responses"]["200"]["content"]) == ["application/xml"]
