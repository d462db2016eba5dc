"""The committed generated code in switchyard/v1 must match what the protos generate."""

from __future__ import annotations

from pathlib import Path

from switchyard import protogen


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protogen.generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc produced nothing"
    committed_dir = protogen.REPO_ROOT
    stale = [
        str(rel)
        for rel in generated
        if not (committed_dir / rel).exists()
        or (committed_dir / rel).read_bytes() != (tmp_path / rel).read_bytes()
    ]
    assert not stale, f"generated code is stale, run `python -m switchyard.protogen`: {stale}"
    committed = {
        p.relative_to(committed_dir) for p in (committed_dir / "switchyard" / "v1").glob("*_pb2*.py*")
    }
    assert committed == set(generated), "switchyard/v1 holds generated files no proto produces"
