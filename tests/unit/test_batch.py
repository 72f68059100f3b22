"""Reading a Graph JSON batch and ordering it by dependsOn (gateway/batch.py's pure part)."""

from __future__ import annotations

import base64

import pytest
from yarl import URL

from gateway.batch import MAX_REQUESTS, locate, ordered, parse
from gateway.errors import GraphError

TOKEN = "Bearer caller"
APPROVE = "/deviceManagement/elevationRequests/r1/approve"


def request(item_id: str, *depends_on: str, **fields) -> dict:
    return {"id": item_id, "method": "GET", "url": "/deviceManagement/elevationRequests",
            **({"dependsOn": list(depends_on)} if depends_on else {}), **fields}


def batch(*requests: dict) -> dict:
    return {"requests": list(requests)}


def refused(body) -> str:
    with pytest.raises(GraphError) as error:
        ordered(parse(body, TOKEN))
    assert error.value.status == 400 and error.value.code == "BadRequest"
    return error.value.message


def run_order(*requests: dict) -> list[str]:
    return [item.id for item in ordered(parse(batch(*requests), TOKEN))]


def test_an_item_keeps_its_method_url_headers_and_json_body():
    [item] = parse(batch({"id": "1", "method": "post", "url": APPROVE, "body": {"reviewerJustification": "ok"},
                          "headers": {"content-type": "application/json", "client-request-id": "c-1"}}), TOKEN)
    assert (item.id, item.method, item.url, item.refusal) == ("1", "POST", APPROVE, "")
    assert item.target == URL("/beta" + APPROVE)
    assert item.headers["Content-Type"] == "application/json" and item.headers["client-request-id"] == "c-1"
    assert item.body == b'{"reviewerJustification": "ok"}'


def test_a_json_body_without_content_type_is_taken_as_json_and_a_string_body_is_base64():
    [json_body, encoded, none] = parse(batch(
        request("1", method="POST", url=APPROVE, body={}),
        request("2", method="POST", url=APPROVE, body=base64.b64encode(b"{}").decode(),
                headers={"Content-Type": "application/json"}),
        request("3", method="POST", url=APPROVE)), TOKEN)
    assert (json_body.body, json_body.headers["Content-Type"]) == (b"{}", "application/json")
    assert (encoded.body, encoded.headers["Content-Type"]) == (b"{}", "application/json")
    assert none.body is None and "Content-Type" not in none.headers


def test_a_string_body_that_is_not_base64_refuses_that_item_only():
    [bad, good] = parse(batch(request("1", method="POST", url=APPROVE, body="{not base64}"), request("2")), TOKEN)
    assert "base64" in bad.refusal and bad.target is None
    assert good.refusal == ""


@pytest.mark.parametrize("url,target", [
    ("/deviceManagement/elevationRequests", "/beta/deviceManagement/elevationRequests"),
    ("deviceManagement/elevationRequests", "/beta/deviceManagement/elevationRequests"),
    ("/deviceManagement/elevationRequests?$filter=status eq 'pending'&$top=5",
     "/beta/deviceManagement/elevationRequests?$filter=status eq 'pending'&$top=5"),
    ("/deviceManagement/elevationRequests('r1')/approve", "/beta/deviceManagement/elevationRequests('r1')/approve"),
])
def test_urls_are_relative_to_the_version_root(url, target):
    assert locate(url) == URL(target)


@pytest.mark.parametrize("url,why", [
    ("https://graph.microsoft.com/beta/deviceManagement/elevationRequests", "not an absolute URL"),
    ("//graph.microsoft.com/beta/deviceManagement/elevationRequests", "not an absolute URL"),
    ("/v1.0/deviceManagement/elevationRequests", "leave out '/v1.0'"),
    ("/beta/deviceManagement/elevationRequests", "leave out '/beta'"),
    ("beta/deviceManagement/elevationRequests", "leave out '/beta'"),
    ("/$batch", "cannot hold a batch"),
    ("$batch", "cannot hold a batch"),
    ("/%24batch", "cannot hold a batch"),
    ("/deviceManagement/../../healthz", ". or .. segments"),
    ("/security/epm/auditEvents/stream?follow=true", "SIEM streams"),
])
def test_urls_a_batch_does_not_run_are_refused_per_item(url, why):
    with pytest.raises(GraphError) as error:
        locate(url)
    assert error.value.status == 400 and why in error.value.message
    [item, other] = parse(batch(request("1", url=url), request("2")), TOKEN)
    assert why in item.refusal and other.refusal == ""


def test_an_item_may_carry_the_batchs_own_authorization_but_no_other():
    [same, other] = parse(batch(request("1", headers={"authorization": TOKEN}),
                                request("2", headers={"Authorization": "Bearer someone-else"})), TOKEN)
    assert same.refusal == ""
    assert "the batch's own Authorization" in other.refusal


@pytest.mark.parametrize("body,why", [
    ([], '{"requests": [...]}'),
    ({}, '{"requests": [...]}'),
    ({"requests": {}}, '{"requests": [...]}'),
    ({"requests": [], "extra": 1}, '{"requests": [...]}'),
    (batch(), "1 to 20 requests, not 0"),
    (batch(*(request(str(n)) for n in range(MAX_REQUESTS + 1))), "1 to 20 requests, not 21"),
    (batch("GET /me"), "requests[0] is not an object"),
    (batch(request("1", atomicityGroup="g")), "unknown property 'atomicityGroup'"),
    (batch({"method": "GET", "url": "/x"}), "requests[0] needs an id"),
    (batch(request(1)), "requests[0] needs an id"),
    (batch(request("")), "requests[0] needs an id"),
    (batch(request("1", method="TRACE")), "method must be one of GET, POST, PUT, PATCH, DELETE"),
    (batch(request("1", method=None)), "method must be one of"),
    (batch(request("1", url="")), "url must be a non-empty string"),
    (batch(request("1", url=["/x"])), "url must be a non-empty string"),
    (batch(request("1", headers=["Accept: x"])), "headers must be an object of strings"),
    (batch(request("1", headers={"Accept": 1})), "headers must be an object of strings"),
    (batch(request("1", headers={"Bad Name": "x"})), "'Bad Name' is not a valid header"),
    (batch(request("1", headers={"X-Evil": "a\r\nHost: elsewhere"})), "'X-Evil' is not a valid header"),
    (batch(request("1"), request("1")), "'1' is given more than once"),
    (batch(request("1", dependsOn="2"), request("2")), "dependsOn must be an array of request ids"),
    (batch(request("1", dependsOn=[2]), request("2")), "dependsOn must be an array of request ids"),
    (batch(request("1", dependsOn=["2"], depends_on=["2"]), request("2")), "not also as depends_on"),
    (batch(request("1", "9")), "Request '1' depends on '9', which is not in the batch"),
])
def test_a_malformed_batch_is_a_400(body, why):
    assert why in refused(body)


def test_without_dependencies_the_order_is_the_requests():
    assert run_order(request("b"), request("a"), request("c")) == ["b", "a", "c"]


def test_an_item_runs_after_what_it_depends_on_even_when_named_later():
    assert run_order(request("1", "3"), request("2"), request("3", "2"), request("4", "1", "2")) == [
        "2", "3", "1", "4"]


def test_the_sdks_depends_on_key_orders_too():
    assert run_order(request("1", depends_on=["2"]), request("2", depends_on=[])) == ["2", "1"]


def test_a_repeated_dependency_counts_once():
    [item, _] = parse(batch(request("1", "2", "2"), request("2")), TOKEN)
    assert item.depends_on == ("2",)


@pytest.mark.parametrize("requests,cycle", [
    ([request("1", "1")], "1 -> 1"),
    ([request("1", "2"), request("2", "1")], "1 -> 2 -> 1"),
    ([request("0"), request("1", "0", "3"), request("2", "1"), request("3", "2")], "1 -> 3 -> 2 -> 1"),
])
def test_a_dependency_cycle_is_a_400_naming_it(requests, cycle):
    assert refused(batch(*requests)) == f"dependsOn makes a cycle: {cycle}."
