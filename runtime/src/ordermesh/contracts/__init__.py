"""The runtime's own contracts, and where the generated Python of any contract lives.

The runtime ships two contracts with their generated modules beside them (written by the
repository's `make gen` from its proto/, never edited here):

- `common/v1/options.proto`: the options a service's contract uses (`(common.v1.access)`,
  `(common.v1.bounds)`, `(common.v1.route)`, ...), read at run time;
- `ops/v1/ops_service.proto`: the operator APIs every service serves (`ops.v1.OperatorService`,
  `ops.v1.SagaService`).

Their modules are `ordermesh.contracts.common.v1.options_pb2` and so on, not top-level `common`
and `ops` packages. A project's own contracts import them by their proto paths (give protoc
`include_path()`); protoc's Python imports them as `common.v1`, which `python_imports`
rewrites to the modules here (`adopt` does that to a directory of protoc's output, and drops
its copies of the runtime's). Every other contract's code is a top-level package named by its
proto path (`user/v1/user_service.proto` -> `user.v1.user_service_pb2`).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

__all__ = ["FILES", "adopt", "include_path", "module", "module_name", "python_imports"]

# The runtime's contract files, by their proto paths.
FILES = ("common/v1/options.proto", "ops/v1/ops_service.proto")


def include_path() -> Path:
    """The directory to give protoc (`-I`) for the runtime's contract files."""
    return Path(__file__).resolve().parent


def module_name(proto_file: str, suffix: str = "_pb2") -> str:
    """The module protoc's Python (suffix `_pb2`) or gRPC (`_pb2_grpc`) code of a contract file
    is: `ops/v1/ops_service.proto` -> `ordermesh.contracts.ops.v1.ops_service_pb2`,
    `user/v1/user_service.proto` -> `user.v1.user_service_pb2`."""
    name = proto_file.removesuffix(".proto").replace("/", ".") + suffix
    return f"{__name__}.{name}" if proto_file in FILES else name


def module(proto_file: str, suffix: str = "_pb2") -> ModuleType:
    """The generated module of a contract file, imported (`module_name`)."""
    return importlib.import_module(module_name(proto_file, suffix))


# `from ops.v1 import ops_service_pb2` (protoc's Python and gRPC code) and `ops.v1.ops_service_pb2`
# (mypy-protobuf's stubs, protoc's module names) of the runtime's files.
_OWN = "|".join(re.escape(f.removesuffix(".proto").replace("/", ".")) for f in FILES)
_QUALIFIED = re.compile(rf"(?<![\w.])((?:{_OWN})_pb2(?:_grpc)?)\b")
_FROM = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<package>[\w.]+) import (?P<module>\w+_pb2(?:_grpc)?)\b",
    re.MULTILINE,
)


def python_imports(code: str) -> str:
    """protoc's Python, gRPC or stub code with its imports of the runtime's contract files
    pointing at their modules here."""

    def _from(found: re.Match[str]) -> str:
        qualified = f"{found['package']}.{found['module']}"
        if _QUALIFIED.fullmatch(qualified) is None:
            return found[0]
        return f"{found['indent']}from {__name__}.{found['package']} import {found['module']}"

    return _QUALIFIED.sub(rf"{__name__}.\1", _FROM.sub(_from, code))


def adopt(generated: Path) -> None:
    """protoc's output for a project's contracts (Python, gRPC and stub files under
    `generated`) made to use the runtime's own contracts: its copies of their modules removed
    (the default descriptor pool takes a file once), its imports of them rewritten."""
    for file in FILES:
        for copy in generated.glob(file.removesuffix(".proto") + "_pb2*"):
            copy.unlink()
    for code in [*generated.rglob("*_pb2*.py"), *generated.rglob("*_pb2*.pyi")]:
        code.write_text(python_imports(code.read_text()))
