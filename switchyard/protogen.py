"""Regenerate the Python code for `protos/` into `switchyard/v1/`.

Run ``python -m switchyard.protogen`` after editing a ``.proto`` file. The test
``tests/test_protogen.py`` regenerates into a temporary folder and fails when the
committed files differ, so stale generated code cannot land.
"""

from __future__ import annotations

import sys
from pathlib import Path

import google.api
from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Compile every proto under ``protos/`` into ``out_dir`` (a package root)."""
    grpc_tools_protos = Path(protoc.__file__).parent / "_proto"
    googleapis_protos = Path(next(iter(google.api.__path__))).parent.parent
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{googleapis_protos}",
        f"-I{grpc_tools_protos}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    generate(REPO_ROOT)
    print(f"generated {len(proto_files())} proto file(s) into switchyard/v1/", file=sys.stderr)


if __name__ == "__main__":
    main()
