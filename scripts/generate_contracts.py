"""Generate the Python contracts (messages, gRPC stubs and .pyi stubs) from protos/.

Usage: python scripts/generate_contracts.py [OUTPUT_DIR]

The output mirrors the proto packages (astra/ledger/v1/...), so generated code is
imported by package path: ``from astra.ledger.v1 import ledger_pb2``. The default
output is libs/contracts/src, where the generated code is committed; the drift
test generates into a temporary folder and compares.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEFAULT_OUTPUT = ROOT / "libs" / "contracts" / "src"


def proto_files() -> list[Path]:
    return sorted(PROTOS.glob("astra/**/*.proto"))


def generate(output: Path) -> list[Path]:
    """Write generated code for every proto under ``output``; return the files written."""
    package_root = output / "astra"
    if package_root.exists():
        shutil.rmtree(package_root)
    output.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTOS}",
        f"--proto_path={well_known}",
        f"--python_out={output}",
        f"--grpc_python_out={output}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out={output}",
        f"--mypy_grpc_out={output}",
        *[str(p.relative_to(PROTOS)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Every folder of generated code is a regular package, so mypy and the
    # import system agree on names.
    for folder in [package_root, *[p for p in package_root.rglob("*") if p.is_dir()]]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text("")
    (package_root / "py.typed").write_text("")
    return sorted(p for p in package_root.rglob("*") if p.is_file())


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    written = generate(output)
    print(f"generated {len(written)} files under {output / 'astra'}")


if __name__ == "__main__":
    main()
