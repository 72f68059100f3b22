"""The OpenAPI document names every route the gateway registers, and is valid OpenAPI 3.1."""

from __future__ import annotations

import schemathesis
from schemathesis.core.result import Ok

from gateway.app import create_app
from gateway.openapi import document
from services.common.settings import Settings


def _routes() -> set[tuple[str, str]]:
    app = create_app(Settings(jwt_secret="s" * 32))
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}


def test_every_route_is_documented_and_nothing_else():
    documented = {(method, path) for path, item in document()["paths"].items() for method in item}
    routes = _routes()
    assert len(routes) > 70
    assert routes - documented == set(), "routes missing from gateway/openapi.py ROUTES"
    assert documented - routes == set(), "documented routes the gateway does not have"


def test_the_document_is_valid_openapi():
    schema = schemathesis.openapi.from_dict(document())
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    operations = list(schema.get_all_operations())
    assert all(isinstance(op, Ok) for op in operations), [op for op in operations if not isinstance(op, Ok)]
    assert len(operations) == len(_routes())


def test_bodies_follow_the_protos_and_errors_are_graphs():
    paths = document()["paths"]
    create = paths["/beta/deviceManagement/elevationRequests"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["requestedOnDeviceId", "applicationDetail"]
    assert "status" not in body["properties"] and body["additionalProperties"] is False
    event = paths["/beta/deviceManagement/privilegeManagementElevations"]["post"]["requestBody"]
    elevation_type = event["content"]["application/json"]["schema"]["properties"]["elevationType"]
    assert "zeroTouchElevation" in elevation_type["enum"]
    listing = paths["/beta/deviceManagement/elevationRequests"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "$filter", "$select", "$orderby", "$top", "$skip", "$count", "$skiptoken", "$search"}
    assert listing["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/GraphError")
    assert "security" in paths["/healthz"]["get"] and paths["/healthz"]["get"]["security"] == []
