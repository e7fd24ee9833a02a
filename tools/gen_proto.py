"""Regenerate confnet/proto/confnet_pb2.py from confnet/proto/confnet.proto.

Usage (from anywhere; needs grpcio-tools, which bundles protoc):

    pip install grpcio-tools
    python tools/gen_proto.py

Run it after every edit of confnet.proto and commit the regenerated module with the
schema. The generated code checks the protobuf runtime version at import; keep the
`protobuf>=` lower bound in pyproject.toml at or above the version it names (the script
prints it).
"""

import re
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "confnet" / "proto"
PROTO = PROTO_DIR / "confnet.proto"
GENERATED = PROTO_DIR / "confnet_pb2.py"


def generate():
    """Run protoc on the schema, writing confnet_pb2.py beside it."""
    command = [
        sys.executable, "-m", "grpc_tools.protoc",
        f"--proto_path={PROTO_DIR}", f"--python_out={PROTO_DIR}", str(PROTO),
    ]
    subprocess.run(command, check=True)


def required_runtime():
    """The protobuf runtime version the generated code asks for, as 'X.Y.Z'."""
    text = GENERATED.read_text()
    match = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,"
        r"\s*(\d+),\s*(\d+),\s*(\d+),", text)
    return ".".join(match.groups()) if match else "unknown"


def main():
    generate()
    print(f"wrote {GENERATED}; needs protobuf>={required_runtime()}")


if __name__ == "__main__":
    main()
