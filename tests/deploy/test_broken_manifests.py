"""Each check reports a broken tree: a copy of deploy/k8s in a temporary directory, one fault in it, rendered
and checked as the real one is. The untouched copy passes, so each failure is the fault's."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest
import yaml

from . import manifests as m


def edit(path: str, change: Callable[[dict], None], kind: str | None = None):
    """Applies `change` to the documents of the file `path` (relative to deploy/k8s), of `kind` if given."""
    def apply(root):
        file = root / path
        docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
        for doc in docs:
            if kind is None or doc.get("kind") == kind:
                change(doc)
        file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return apply


def container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def drop_env(name: str):
    def change(doc):
        container(doc)["env"] = [e for e in container(doc)["env"] if e["name"] != name]
    return change


def add_config(literal: str):
    def change(doc):
        doc["configMapGenerator"][0]["literals"].append(literal)
    return change


def set_config(key: str, value: str):
    def change(doc):
        literals = doc["configMapGenerator"][0]["literals"]
        doc["configMapGenerator"][0]["literals"] = [x for x in literals if not x.startswith(f"{key}=")] + \
            [f"{key}={value}"]
    return change


def set_path(*path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


BROKEN = {
    # name: (overlay, fault, check, what its report says)
    "string containerPort": ("dev", edit("base/events.yaml", lambda d: container(d)["ports"][0].update(
        containerPort="50051"), "Deployment"), "schema", "containerPort"),
    "unknown field": ("dev", edit("base/gateway.yaml", lambda d: container(d).update(
        readinesProbe=container(d)["readinessProbe"]), "Deployment"), "schema", "readinesProbe"),
    "no container securityContext": ("dev", edit("base/requests.yaml", lambda d: container(d).pop(
        "securityContext"), "Deployment"), "lint", "Deployment/epm-requests container requests: "
                                                    "readOnlyRootFilesystem is not true"),
    "privilege escalation": ("prod", edit("base/gateway.yaml", lambda d: container(d)["securityContext"].update(
        allowPrivilegeEscalation=True), "Deployment"), "lint", "allowPrivilegeEscalation is not false"),
    "capabilities kept": ("dev", edit("base/migrate-job.yaml", lambda d: container(d)["securityContext"].pop(
        "capabilities"), "Job"), "lint", "Job/epm-migrate container migrate: capabilities do not drop ALL"),
    "no seccomp profile": ("dev", edit("overlays/dev/postgres.yaml", lambda d: d["spec"]["template"]["spec"][
        "securityContext"].pop("seccompProfile") and container(d)["securityContext"].pop("seccompProfile"),
        "StatefulSet"), "lint", "StatefulSet/postgres container postgres: seccompProfile is not RuntimeDefault"),
    "unknown env var": ("dev", edit("base/kustomization.yaml", add_config("EPM_NOT_A_SETTING=1")), "lint",
                        "EPM_NOT_A_SETTING is not read by services/common/settings.py"),
    "no database URL": ("dev", edit("base/events.yaml", drop_env("EPM_DATABASE_URL"), "Deployment"), "lint",
                        "Deployment/epm-events container events: EPM_DATABASE_URL is not set"),
    "no token key": ("dev", edit("base/gateway.yaml", drop_env("EPM_JWT_SECRET"), "Deployment"), "lint",
                     "needs exactly one of EPM_JWT_SECRET / EPM_JWKS_URL, has []"),
    "two token keys": ("dev", edit("base/kustomization.yaml", add_config("EPM_JWKS_URL=https://idp.example/keys")),
                       "lint", "has ['EPM_JWT_SECRET', 'EPM_JWKS_URL']"),
    "grace too long": ("prod", edit("base/kustomization.yaml", set_config("EPM_SHUTDOWN_GRACE", "30")), "lint",
                       "EPM_SHUTDOWN_GRACE 30 s is not shorter than terminationGracePeriodSeconds 30"),
    "migrations on start": ("dev", edit("base/kustomization.yaml", set_config("EPM_MIGRATE_ON_START", "true")),
                            "lint", "EPM_MIGRATE_ON_START is not false"),
    "unknown command": ("dev", edit("base/reputation.yaml", lambda d: container(d).update(
        command=["epm", "serve", "audit"]), "Deployment"), "lint", "`epm serve audit` is not an epm command"),
    "a non-process command": ("dev", edit("base/migrate-job.yaml", lambda d: container(d).update(
        command=["epm", "token"]), "Job"), "lint", "runs ['token'], not `epm serve NAME` or `epm migrate`"),
    "latest tag": ("prod", edit("overlays/prod/kustomization.yaml", lambda d: d["images"][0].update(
        newTag="latest")), "lint", "uses the `latest` tag"),
    "hostPath": ("dev", edit("base/gateway.yaml", lambda d: d["spec"]["template"]["spec"]["volumes"][0].update(
        emptyDir=None, hostPath={"path": "/tmp"}), "Deployment"), "lint", "volume 'tmp' is a hostPath"),
    "no limits": ("dev", edit("base/events.yaml", lambda d: container(d)["resources"].pop("limits"),
                              "Deployment"), "lint", "container events: no memory limits"),
    "no liveness probe": ("dev", edit("base/reputation.yaml", lambda d: container(d).pop("livenessProbe"),
                                      "Deployment"), "lint", "container reputation: no livenessProbe"),
    "probe on the wrong port": ("dev", edit("base/requests.yaml", lambda d: container(d)["readinessProbe"].update(
        grpc={"port": 50051}), "Deployment"), "lint", "readinessProbe is not a gRPC health check on port 50052"),
    "no scrape annotation": ("dev", edit("base/events.yaml", lambda d: d["spec"]["template"]["metadata"][
        "annotations"].pop("prometheus.io/scrape"), "Deployment"), "lint", "pod annotation prometheus.io/scrape"),
    "address of no Service": ("dev", edit("base/kustomization.yaml", set_config("EPM_EVENTS_ADDR", "events:50051")),
                              "lint", "EPM_EVENTS_ADDR=events:50051 is not a Service port"),
    "no HPA": ("dev", edit("base/gateway.yaml", lambda d: d["spec"].update(
        scaleTargetRef={**d["spec"]["scaleTargetRef"], "name": "other"}), "HorizontalPodAutoscaler"), "lint",
        "no HorizontalPodAutoscaler for Deployment/epm-gateway"),
    "token mounted": ("dev", edit("base/events.yaml", lambda d: d.update(automountServiceAccountToken=True) or
                                  d.get("spec", {}).get("template", {}).get("spec", {}).pop(
                                      "automountServiceAccountToken", None)), "lint",
                      "Deployment/epm-events: the service account token is mounted"),
    "CNPG instances a string": ("prod", edit("overlays/prod/postgres-cluster.yaml", set_path(
        "spec", "instances", value="three"), "Cluster"), "custom", "spec.instances 'three' is not a positive"),
    "ServiceMonitor port": ("prod", edit("overlays/prod/service-monitor.yaml", lambda d: d["spec"]["endpoints"][0]
                                         .update(port="prom"), "ServiceMonitor"), "custom",
                            "endpoint port 'prom' is not a named port of Service/epm-events"),
    "unchecked custom resource": ("prod", edit("overlays/prod/service-monitor.yaml", set_path(
        "apiVersion", value="monitoring.coreos.com/v2"), "ServiceMonitor"), "custom",
        "a custom resource nothing here checks"),
}


def check(name: str, docs: list[dict]) -> list[str]:
    return {"schema": m.validate_schemas, "lint": m.lint, "custom": m.check_custom_resources}[name](docs)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "k8s"
    shutil.copytree(m.K8S, root)
    return root


def test_the_untouched_copy_passes(tree):
    for overlay in ("dev", "prod"):
        docs = m.render(tree / "overlays" / overlay)
        assert m.lint(docs) == [] and m.check_custom_resources(docs) == []


@pytest.mark.parametrize("fault", sorted(BROKEN))
def test_each_check_reports_its_fault(tree, fault):
    overlay, apply, check_name, expected = BROKEN[fault]
    apply(tree)
    problems = check(check_name, m.render(tree / "overlays" / overlay))
    assert any(expected in problem for problem in problems), problems


def test_a_secret_nothing_creates(tree):
    file = tree / "overlays" / "prod" / "database-url.yaml"
    file.write_text(file.read_text().replace("name: epm-db-app", "name: epm-db-application"))
    problems = m.lint(m.render(tree / "overlays" / "prod"))
    assert any("reads Secret 'epm-db-application', which nothing creates" in p for p in problems), problems
