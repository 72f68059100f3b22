"""Build hook: compile protos/ into the `epm` package (gen/epm) with grpc_tools.protoc."""

import shutil
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).parent


def _plugin(name: str) -> str:
    """mypy-protobuf's plugin, from the running interpreter's bin dir (build envs are not always on PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def generate(out: Path) -> None:
    """Writes *_pb2.py, *_pb2_grpc.py and .pyi stubs for every proto under protos/ into `out`."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{ROOT / 'protos'}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on protos/")
    for package in (d for d in out.rglob("*") if d.is_dir()):
        (package / "__init__.py").touch()


class ProtoBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        generate(ROOT / "gen")
