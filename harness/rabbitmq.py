"""A private RabbitMQ node: its own node name, ports, data, logs, cookie and (no) plugins.

It shares nothing with a RabbitMQ the machine may run: another node name and AMQP and
distribution ports, its own epmd on its own port (started and ended here, so no daemon is left
behind), its own HOME (hence its own Erlang cookie), and an empty enabled-plugins file, so a
machine-wide management plugin cannot collide on port 15672. There is no guest: the node's one
user and its password are generated for each node (`default_user`/`default_pass`, in a config
file only its owner may read), so another process on the host cannot publish to it (forge a
saga's reply, a signing key's event). The Erlang VM runs as
the direct child (RUNNING_UNDER_SYSTEMD makes the start script exec it), so a SIGKILL reaches
the broker itself, as a crash would. Its data directory survives stop/start, like a real node's.

`PrivateRabbitMQCluster(directory, size=3)`: that many such nodes, sharing one epmd, one Erlang
cookie and one user, joined into one cluster at their first start (classic config peer
discovery, started one after the other), quorum queues replicated on every node. A node that
loses sight of the majority pauses (`pause_minority`, as in production) and resumes once it
sees it again. `uids` runs each node as a user of its own, so that firewall rules can tell
their traffic apart (the partition test, in a network namespace of its own).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.private import private_file
from harness.process import ManagedProcess, accepts, free_port

__all__ = ["PrivateRabbitMQ", "PrivateRabbitMQCluster", "answers_amqp"]

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
QUEUES = Path("/usr/lib/rabbitmq/bin/rabbitmq-queues")
# What a quorum queue's member that takes part in its quorum reports as its Raft state.
VOTING = {"leader", "follower"}
# AMQP 0-9-1 protocol header; a ready broker answers with a Connection.Start method frame.
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1


def answers_amqp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(AMQP_HEADER)
            return sock.recv(1) == bytes([FRAME_METHOD])
    except OSError:
        return False


class PrivateRabbitMQ:
    def __init__(
        self,
        directory: Path,
        *,
        port: int = 0,
        cluster: _Membership | None = None,
        uid: int | None = None,
    ):
        """`cluster`: what this node shares with the others of a PrivateRabbitMQCluster;
        `uid`: the user it runs as (owner of `directory` then, whose parent it must traverse)."""
        if not SERVER.exists():
            raise FileNotFoundError(
                f"{SERVER} not found: install RabbitMQ with `apt-get install rabbitmq-server`"
            )
        self.directory = directory
        self.uid = uid
        self.port = port or free_port()
        self.dist_port = free_port()
        self.node = node_name(self.port)
        home = directory / "home"
        home.mkdir(parents=True, exist_ok=True)
        (directory / "enabled_plugins").write_text("[].\n")
        self.user = cluster.user if cluster else f"ordermesh-{secrets.token_hex(4)}"
        self.password = cluster.password if cluster else secrets.token_urlsafe(24)
        peers = ""
        if cluster is not None:
            # One cookie for all, read by each node from its HOME (owner only, as Erlang asks).
            cookie = home / ".erlang.cookie"
            cookie.write_text(cluster.cookie)
            cookie.chmod(0o400)
            peers = (
                "cluster_formation.peer_discovery_backend = classic_config\n"
                + "".join(
                    f"cluster_formation.classic_config.nodes.{n} = {node}\n"
                    for n, node in enumerate(cluster.nodes, start=1)
                )
                + "cluster_partition_handling = pause_minority\n"
            )
            if cluster.net_ticktime_s:  # how soon an unreachable peer counts as down
                peers += f"net_ticktime = {cluster.net_ticktime_s}\n"
        private_file(
            directory / "rabbitmq.conf",
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            # Quorum queues refuse to start on a node with less free disk than this (bytes).
            "disk_free_limit.absolute = 50000000\n"
            # Made at the node's first start instead of guest, with every right on "/".
            f"default_user = {self.user}\n"
            f"default_pass = {self.password}\n"
            "default_user_tags.administrator = true\n" + peers,
        )
        self.epmd_port = cluster.epmd_port if cluster else free_port()
        self.env = {
            "HOME": str(home),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
            "RABBITMQ_LOGS": "-",
            "RUNNING_UNDER_SYSTEMD": "true",
        }
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        self.epmd = ManagedProcess(
            "epmd",
            [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            directory=directory,
            ready=lambda: accepts(self.epmd_port),
            ready_timeout_s=10.0,
        )
        self.process = ManagedProcess(
            "rabbitmq",
            [str(SERVER)],
            directory=directory,
            env=self.env,
            ready=lambda: answers_amqp(self.port),
            ready_timeout_s=90.0,
            user=uid,
        )
        if uid is not None:
            for path in (directory, *directory.rglob("*")):
                os.chown(path, uid, -1)

    @property
    def url(self) -> str:
        return self.vhost_url("")

    def vhost_url(self, vhost: str) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/{vhost}"

    def start(self) -> None:
        if not accepts(self.epmd_port):  # a cluster's nodes share the first one's
            self.epmd.start()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL to the broker, as a crash would; its epmd stays, as a host's would."""
        self.process.kill()

    def ctl(self, *args: str, tool: Path = CTL) -> str:
        """Runs rabbitmqctl (or another of RabbitMQ's CLI tools) against this node (and no
        other); returns its output."""
        result = subprocess.run(
            [str(tool), "--node", self.node, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool.name} {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def add_vhost(self, vhost: str) -> str:
        """Creates a vhost that the node's user may use, and returns its URL: one per test
        isolates it."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, self.user, ".*", ".*", ".*")
        return self.vhost_url(vhost)

    def remove(self) -> None:
        """Stops the node and its epmd, and deletes its data."""
        self.stop()
        self.epmd.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def node_name(port: int) -> str:
    return f"ordermesh-test-{port}@localhost"


@dataclass(frozen=True)
class _Membership:
    nodes: tuple[str, ...]
    cookie: str
    epmd_port: int
    user: str
    password: str
    net_ticktime_s: int | None = None


class PrivateRabbitMQCluster:
    """`size` private nodes joined into one cluster (see the module doc)."""

    def __init__(
        self,
        directory: Path,
        *,
        size: int = 3,
        net_ticktime_s: int | None = None,
        uids: tuple[int, ...] | None = None,
    ):
        ports = [free_port() for _ in range(size)]
        membership = _Membership(
            nodes=tuple(node_name(port) for port in ports),
            cookie=secrets.token_hex(20),
            epmd_port=free_port(),
            user=f"ordermesh-{secrets.token_hex(4)}",
            password=secrets.token_urlsafe(24),
            net_ticktime_s=net_ticktime_s,
        )
        self.directory = directory
        self.nodes = [
            PrivateRabbitMQ(
                directory / f"node-{n}",
                port=port,
                cluster=membership,
                uid=uids[n] if uids else None,
            )
            for n, port in enumerate(ports)
        ]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> None:
        """Starts the nodes one after the other: each later one joins the first."""
        for node in self.nodes:
            node.start()
        self.wait_for_members(len(self.nodes))

    def live(self) -> PrivateRabbitMQ:
        """The first node whose process runs."""
        return next(node for node in self.nodes if node.process.running)

    def ask(self, *args: str, tool: Path = CTL, through: PrivateRabbitMQ | None = None) -> str:
        """A CLI command's output from `through`, or from the first running node that answers
        (a paused node's process runs, its broker does not)."""
        if through is not None:
            return through.ctl(*args, tool=tool)
        refusals = []
        for node in self.nodes:
            if node.process.running:
                try:
                    return node.ctl(*args, tool=tool)
                except RuntimeError as refused:
                    refusals.append(str(refused))
        raise RuntimeError(f"no node answers: {refusals}")

    def running_nodes(self, through: PrivateRabbitMQ | None = None) -> list[str]:
        """The cluster's running nodes, as a node tells."""
        status = json.loads(self.ask("cluster_status", "--formatter", "json", through=through))
        return sorted(status["running_nodes"])

    def clients(self, through: PrivateRabbitMQ | None = None) -> dict[str, PrivateRabbitMQ]:
        """The node each named client connection is on (by the AMQP port it reached)."""
        by_port = {node.port: node for node in self.nodes}
        found = {}
        listed = self.ask(
            "list_connections", "client_properties", "port", "--no-table-headers", through=through
        )
        for line in listed.splitlines():
            name = re.search(r'\{"connection_name","([^"]+)"\}', line)
            port = line.rsplit("\t", 1)[-1].strip()
            if name and port.isdigit():
                found[name.group(1)] = by_port[int(port)]
        return found

    def wait_for_members(self, count: int, *, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                running = self.running_nodes()
            except RuntimeError as none_answers:  # all starting, or paused
                running, why = [], str(none_answers)
            else:
                why = str(running)
            if len(running) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{why} after {timeout_s} s")
            time.sleep(0.5)

    def quorum(self, queue: str, *, vhost: str = "/") -> dict[str, str]:
        """The Raft state of each member of a quorum queue (leader, follower, or why not:
        nodedown, noproc, ...), by node, as a live node tells."""
        status = self.ask(
            "quorum_status", "--vhost", vhost, queue, "--formatter", "json", tool=QUEUES
        )
        return {member["Node Name"]: str(member["Raft State"]) for member in json.loads(status)}

    def wait_for_quorum(self, queue: str, *, vhost: str = "/", timeout_s: float = 60.0) -> None:
        """Until every member of the queue takes part in its quorum again (a node that came
        back has caught up): before another node may go, as an operator would wait."""
        deadline = time.monotonic() + timeout_s
        while set((states := self.quorum(queue, vhost=vhost)).values()) - VOTING:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue}: {states} after {timeout_s} s")
            time.sleep(0.5)

    def wait_until_safe_to_stop(self, node: PrivateRabbitMQ, *, timeout_s: float = 60.0) -> None:
        """Until no quorum queue (of any vhost) would lose its quorum with `node` gone, as
        `rabbitmq-queues check_if_node_is_quorum_critical` tells: the check before taking a
        node away."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                node.ctl("check_if_node_is_quorum_critical", tool=QUEUES)
                return
            except RuntimeError as critical:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{node.node} still quorum critical: {critical}") from None
            time.sleep(0.5)

    def add_vhost(self, vhost: str) -> str:
        """A vhost on the cluster (made through a live node); the URL of every node, joined by
        commas, for the services' RABBITMQ_URL."""
        self.live().add_vhost(vhost)
        return ",".join(node.vhost_url(vhost) for node in self.nodes)

    def remove(self) -> None:
        """Stops the nodes and deletes their data; their logs stay, to read after a failure."""
        for node in reversed(self.nodes):
            node.stop()
        for node in self.nodes:
            node.epmd.stop()
            shutil.rmtree(node.directory / "mnesia", ignore_errors=True)
