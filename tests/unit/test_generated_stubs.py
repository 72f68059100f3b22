"""The installed protobuf stubs must be exactly what protos/ generates now."""

import filecmp
from pathlib import Path

import epm

import hatch_build


def test_installed_stubs_match_the_protos(tmp_path: Path):
    hatch_build.generate(tmp_path)
    installed = Path(epm.__file__).parent
    fresh = sorted(p.relative_to(tmp_path / "epm") for p in (tmp_path / "epm").rglob("*_pb2*.py"))
    assert fresh, "protos/ generated nothing"
    stale = [str(p) for p in fresh
             if not (installed / p).exists() or not filecmp.cmp(tmp_path / "epm" / p, installed / p, shallow=False)]
    assert not stale, f"generated stubs are stale, reinstall (pip install -e .): {stale}"
