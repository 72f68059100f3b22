"""deploy/Dockerfile, checked from Python (no Docker engine here): a multi-stage build whose wheel carries the
generated stubs, a slim non-root runtime, and an entry point whose commands are the ones the manifests run."""

from __future__ import annotations

import json
import re
import tomllib
from fnmatch import fnmatch

from . import manifests as m

DOCKERFILE = m.ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for op, arg in instructions():
        if op == "FROM":
            out.append([])
        out[-1].append((op, arg))
    return out


def pyproject() -> dict:
    return tomllib.loads((m.ROOT / "pyproject.toml").read_text())


def test_multi_stage_with_a_slim_runtime():
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert re.search(r"\bAS build$", build[0][1], re.I)
    assert "slim" in runtime[0][1] and ":" in runtime[0][1].split()[0]
    assert any(op == "COPY" and arg.startswith("--from=build") for op, arg in runtime)
    runtime_runs = " ".join(arg for op, arg in runtime if op == "RUN")
    assert "grpcio-tools" not in runtime_runs and "pip wheel" not in runtime_runs  # no build tools at run time


def test_the_build_stage_makes_the_wheel_whose_build_hook_generates_the_stubs():
    build = stages()[0]
    copied = set()
    for op, arg in build:
        if op == "COPY":
            *sources, _ = arg.split()
            copied |= set(sources)
    project = pyproject()
    assert project["tool"]["hatch"]["build"]["hooks"]["custom"]["path"] in copied
    assert {"pyproject.toml", project["project"]["readme"], "protos"} <= copied
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {p for p in packages if not p.startswith("gen/")} <= copied  # gen/ is what the hook writes
    assert all((m.ROOT / source).exists() for source in copied)
    assert any(op == "RUN" and "pip wheel" in arg and arg.rstrip().endswith(" .") for op, arg in build)
    ignored = [line.strip() for line in (m.ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not [s for s in copied for pattern in ignored if fnmatch(s, pattern)]


def test_runs_as_a_numeric_non_root_user():
    users = [arg for op, arg in stages()[-1] if op == "USER"]
    assert users and re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1])  # numeric: runAsNonRoot can verify it
    uid = int(users[-1].split(":")[0])
    for overlay in m.overlays():
        for doc in m.render(overlay):
            spec = m.pod_spec(doc) or {}
            for container in spec.get("containers", []):
                if m.is_epm_image(container["image"]):
                    assert (container.get("securityContext", {}).get("runAsUser")
                            or spec.get("securityContext", {}).get("runAsUser")) == uid


def test_the_entry_point_is_the_epm_console_script_and_its_default_command_exists():
    runtime = dict(stages()[-1])
    entrypoint, cmd = json.loads(runtime["ENTRYPOINT"]), json.loads(runtime["CMD"])
    assert entrypoint == ["epm"]
    assert pyproject()["project"]["scripts"]["epm"] == "services.cli:main"
    assert m.command_problem(entrypoint + cmd) is None
    for process in [*(["serve", name] for name in m.SERVED), ["migrate"]]:
        assert m.command_problem(entrypoint + process) is None, process


def test_exposes_every_port_the_manifests_use():
    exposed = {int(p.split("/")[0]) for op, arg in stages()[-1] if op == "EXPOSE" for p in arg.split()}
    used = {port["containerPort"] for overlay in m.overlays() for doc in m.render(overlay)
            for container in (m.pod_spec(doc) or {}).get("containers", []) if m.is_epm_image(container["image"])
            for port in container.get("ports", [])}
    assert used and used <= exposed
