"""The Kubernetes manifests render, validate against Kubernetes' own schemas offline, and pass the lint
(tests/deploy/manifests.py says what each check looks at)."""

from __future__ import annotations

import functools

import pytest

from . import manifests as m

OVERLAYS = m.overlays()
PORTS = {"events": 50051, "requests": 50052, "reputation": 50053, "gateway": 8080}
CALLS = {("gateway", "events"), ("gateway", "requests"), ("gateway", "reputation"), ("events", "requests"),
         ("requests", "reputation"), ("reputation", "events"), ("reputation", "requests")}


@functools.cache
def rendered(name: str) -> list[dict]:
    return m.render(m.K8S / "base" if name == "base" else m.K8S / "overlays" / name)


def test_there_are_a_dev_and_a_prod_overlay():
    assert {p.name for p in OVERLAYS} >= {"dev", "prod"}


@pytest.mark.parametrize("overlay", ["base", *(p.name for p in OVERLAYS)])
def test_valid_against_the_kubernetes_schemas(overlay):
    assert m.validate_schemas(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_lint(overlay):
    assert m.lint(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_custom_resources(overlay):
    assert m.check_custom_resources(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_every_process_runs_with_its_entry_point(overlay):
    commands = {tuple(c["command"]) for d in rendered(overlay) if (spec := m.pod_spec(d))
                for c in spec["containers"] if m.is_epm_image(c["image"])}
    assert commands == {("epm", "serve", name) for name in m.SERVED} | {("epm", "migrate")}
    assert all(m.command_problem(list(c)) is None for c in commands)


def test_the_entry_point_check_refuses_what_the_cli_refuses():
    assert m.command_problem(["epm", "serve", "audit"])
    assert m.command_problem(["epm", "token"])
    assert m.command_problem(["python", "-m", "services.cli", "migrate"])


def test_the_settings_parse_finds_the_required_variables():
    names = m.settings_variables()
    assert {m.REQUIRED_DATABASE, *m.ONE_OF_TOKEN_KEYS, "EPM_SHUTDOWN_GRACE", "EPM_MIGRATE_ON_START"} <= names
    assert "EPM_DATA_DIR" not in names  # read by cli.py (epm up), not a process setting


def test_prod_verifies_tokens_with_jwks_and_reads_the_database_url_from_cloudnativepg():
    docs = rendered("prod")
    cluster = next(d for d in docs if d["kind"] == "Cluster")
    for doc in docs:
        for container in (m.pod_spec(doc) or {}).get("containers", []):
            if not m.is_epm_image(container["image"]):
                continue
            env = {e["name"]: e for e in container.get("env", [])}
            assert "EPM_JWT_SECRET" not in env
            if "EPM_DATABASE_URL" in env:
                ref = env["EPM_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
            assert not m.image_problem(container["image"]) and container["image"].startswith("registry.")


def _peers(rule: dict, docs: list[dict], key: str) -> set[str]:
    """The epm components a NetworkPolicy rule admits ('*' for anywhere)."""
    if not rule.get(key):
        return {"*"}
    peers = set()
    for peer in rule[key]:
        if "ipBlock" in peer or "namespaceSelector" in peer:
            peers.add("*" if "ipBlock" in peer else "other-namespace")
            continue
        for component in PORTS:
            if m._selects(peer.get("podSelector", {}), {"app.kubernetes.io/name": "epm",
                                                         "app.kubernetes.io/component": component}):
                peers.add(component)
    return peers


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_network_policies_allow_exactly_the_calls_between_processes(overlay):
    docs = rendered(overlay)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    def allowed(component: str, direction: str, port: int) -> set[str]:
        labels = {"app.kubernetes.io/name": "epm", "app.kubernetes.io/component": component}
        key = "from" if direction == "ingress" else "to"
        found = set()
        for policy in policies:
            if m._selects(policy["spec"].get("podSelector", {}), labels):
                for rule in policy["spec"].get(direction, []):
                    if any(p.get("port") == port for p in rule.get("ports", [])) or not rule.get("ports"):
                        found |= _peers(rule, docs, key)
        return found

    for callee in ("events", "requests", "reputation"):
        assert allowed(callee, "ingress", PORTS[callee]) == {a for a, b in CALLS if b == callee}, callee
    assert allowed("gateway", "ingress", 8080) == {"*"}
    for caller, callee in CALLS:
        assert callee in allowed(caller, "egress", PORTS[callee]), (caller, callee)
    for component in PORTS:
        assert "other-namespace" in allowed(component, "ingress", 9090), component  # Prometheus
        assert "*" in allowed(component, "egress", 53), component
    for component in ("events", "requests", "reputation"):
        assert "*" in allowed(component, "egress", 5432), component
    assert "*" in allowed("requests", "egress", 443)  # subscribers' https endpoints
