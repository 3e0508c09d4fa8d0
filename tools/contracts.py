"""Contract tooling: code generation and the breaking-change gate, for `make gen` and `make lint`.

The Buf Schema Registry is unreachable, so `google/api/{annotations,http}.proto` are copied from
the installed googleapis-common-protos package into `.build/protodeps` (the second module of the
buf workspace in buf.yaml) before buf runs; they are never committed.

    python tools/contracts.py deps       copy the google/api protos into .build/protodeps
    python tools/contracts.py gen        regenerate gen/ (messages, stubs, .pyi, descriptor set)
                                         and the runtime's own contracts' code and copies
                                         (ordermesh.contracts: common/v1/options.proto,
                                         ops/v1/ops_service.proto)
    python tools/contracts.py breaking   fail if a contract breaks compared with landed ones

`breaking` compares images, not a workspace with an image (buf refuses a two-module workspace
against one image). It checks the working tree against HEAD and every commit that changed
`proto/` against its parent, from BUF_BREAKING_AGAINST (a commit, e.g. what main was before a
push) or else from the first commit: a break anywhere in the history fails, however many
commits a change lands at once. Besides buf's FILE rules (which cover the events' and
commands' fields as they cover the RPCs'), it fails a changed `(common.v1.route)` of an
existing event or command: buf does not compare custom options, and consumers are bound to
the route.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from ordermesh import contracts as runtime_contracts

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
GEN = ROOT / "gen"
PROTODEPS = ROOT / ".build" / "protodeps"
IMAGES = ROOT / ".build" / "images"
DESCRIPTOR_SET = GEN / "descriptors.pb"
# Where the runtime's own contracts go, their source copied beside their code (in its wheel).
RUNTIME_CONTRACTS = runtime_contracts.include_path()
GOOGLE_API_FILES = ("annotations.proto", "http.proto")
BIN = Path(sys.executable).parent


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, check=True, text=True)


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, check=True, text=True, capture_output=True)
    return out.stdout.strip()


def copy_deps(workspace: Path = ROOT) -> None:
    target = workspace / ".build" / "protodeps" / "google" / "api"
    target.mkdir(parents=True, exist_ok=True)
    source = Path(google.api.__path__[0])
    for name in GOOGLE_API_FILES:
        shutil.copyfile(source / name, target / name)


def generate() -> None:
    copy_deps()
    protos = sorted(p.relative_to(PROTO).as_posix() for p in PROTO.rglob("*.proto"))
    shutil.rmtree(GEN, ignore_errors=True)
    GEN.mkdir()
    include_wkt = Path(grpc_tools.__path__[0]) / "_proto"
    _run(
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{PROTO}", f"-I{PROTODEPS}", f"-I{include_wkt}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={GEN}", f"--grpc_python_out={GEN}",
        f"--mypy_out=quiet:{GEN}", f"--mypy_grpc_out=quiet:{GEN}",
        "--include_imports", f"--descriptor_set_out={DESCRIPTOR_SET}",
        *protos,
    )  # fmt: skip
    for stub in GEN.rglob("*_pb2_grpc.py"):
        if "class " not in stub.read_text():  # no service in this file: drop the empty stubs
            stub.unlink()
            stub.with_suffix(".pyi").unlink()
    _move_runtime_contracts()
    runtime_contracts.adopt(GEN)
    for root in (GEN, RUNTIME_CONTRACTS):
        for module in root.rglob("*_pb2.py"):
            directory = module.parent
            while directory != root:
                (directory / "__init__.py").touch()
                directory = directory.parent


def _move_runtime_contracts() -> None:
    """The runtime's own contract files, their source and their code, from gen/ and proto/ into
    the runtime's package (whatever an earlier run put there first removed), the code's imports
    of one another (ops.v1's of common.v1's options) pointing there."""
    for old in RUNTIME_CONTRACTS.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    for file in runtime_contracts.FILES:
        target = RUNTIME_CONTRACTS / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROTO / file, target)
        stem = file.removesuffix(".proto")
        for code in GEN.glob(f"{stem}_pb2*"):
            (target.parent / code.name).write_text(
                runtime_contracts.python_imports(code.read_text())
            )
            code.unlink()
    for directory in sorted(GEN.rglob("*"), reverse=True):  # the deepest first
        if directory.is_dir() and not any(directory.glob("**/*_pb2*")):
            shutil.rmtree(directory)


def build_image(workspace: Path, image: Path) -> None:
    """Builds the buf image of a workspace laid out like this repository (buf.yaml, proto/)."""
    copy_deps(workspace)
    _run(BIN / "buf", "build", "-o", image, cwd=workspace)


def breaking_changes(current: Path, against: Path) -> str:
    """buf's report of what `current` breaks of `against` (two images); empty if nothing.

    The rules are the `breaking` section of buf.yaml in ROOT.
    """
    result = subprocess.run(
        [BIN / "buf", "breaking", current, "--against", against],
        cwd=ROOT, text=True, capture_output=True,
    )  # fmt: skip
    if result.returncode not in (0, 100):  # 100: breaking changes found
        raise RuntimeError(f"buf breaking failed: {result.stderr}")
    return result.stdout.strip()


def route_changes(current: Path, against: Path) -> str:
    """The routed messages (events, commands) of `against` whose `(common.v1.route)` differs in
    `current` (two images), one line each; empty if none. buf compares no custom option's value,
    and a route is where every consumer's queue is bound: changing it loses messages as surely
    as renumbering a field. (A routed message deleted is buf's to report.)"""
    from google.protobuf import descriptor_pb2
    from ordermesh.contracts.common.v1 import options_pb2

    def routes(image: Path) -> dict[str, str]:
        found = {}
        for file in descriptor_pb2.FileDescriptorSet.FromString(image.read_bytes()).file:
            for message in file.message_type:
                if message.options.HasExtension(options_pb2.route):
                    route = message.options.Extensions[options_pb2.route]
                    found[f"{file.package}.{message.name}"] = (
                        f"{route.exchange} ({options_pb2.ExchangeKind.Name(route.exchange_kind)}) "
                        f"{route.routing_key!r} {options_pb2.MessageKind.Name(route.kind)}"
                    )
        return found

    before, after = routes(against), routes(current)
    return "\n".join(
        f"{name}: route changed from {before[name]} to {after[name]}"
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    )


def _has_proto(rev: str) -> bool:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}:proto"],
        cwd=ROOT, capture_output=True,
    )  # fmt: skip
    return found.returncode == 0


def image_of_commit(commit: str) -> Path:
    """The buf image of a commit's contracts, cached by the hash of its proto/ tree."""
    image = IMAGES / f"{_git('rev-parse', f'{commit}:proto')}.binpb"
    if not image.exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(
                ["git", "archive", commit, "proto", "buf.yaml"],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            build_image(Path(tmp), image)
    return image


def breaking() -> int:
    since = os.environ.get("BUF_BREAKING_AGAINST")
    commits = _git("rev-list", "--reverse", f"{since}..HEAD" if since else "HEAD", "--", "proto")
    comparisons = [
        (f"commit {c[:12]}", image_of_commit(c), image_of_commit(f"{c}~1"))
        for c in commits.split()
        if _has_proto(f"{c}~1")
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if _has_proto("HEAD"):
            working_tree = Path(tmp) / "working-tree.binpb"
            build_image(ROOT, working_tree)
            comparisons.append(("the working tree", working_tree, image_of_commit("HEAD")))
        failed = False
        for where, current, against in comparisons:
            report = "\n".join(
                found
                for found in (breaking_changes(current, against), route_changes(current, against))
                if found
            )
            if report:
                failed = True
                print(f"breaking: {where} breaks contracts:\n{report}", file=sys.stderr)
    print(f"breaking: {len(comparisons)} comparison(s), {'FAILED' if failed else 'no breaks'}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["deps", "gen", "breaking"])
    command = parser.parse_args().command
    if command == "deps":
        copy_deps()
    elif command == "gen":
        generate()
    else:
        return breaking()
    return 0


if __name__ == "__main__":
    sys.exit(main())
