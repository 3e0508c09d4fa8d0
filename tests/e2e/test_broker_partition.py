"""A RabbitMQ node cut off from the other two while events flow (issue 14).

The three nodes, the producer and the consumer run in a network namespace of this module's own
(harness.netns): its firewall rules exist only there. Each node runs as a user of its own, so
that the rules can tell its traffic apart on the one loopback interface: the victim's Erlang
distribution traffic to and from the other two nodes is dropped, while its clients still reach
it. The victim, a minority of one, pauses (`pause_minority`) and closes its clients'
connections; they move to the majority, which goes on. Once the cut is healed the victim
resumes and its replica of the queue catches up. Every event is handled once.

Everything here is started by this module and ended by it, by PID; the namespace goes with the
last of its processes. Processes are started from the test's own thread, never through
asyncio.to_thread: the session's thread pool was made outside the namespace, and what its
threads start runs outside it.
"""

import asyncio
import contextlib
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.netns import NamespaceUnavailable, iptables, network_namespace
from harness.rabbitmq import PrivateRabbitMQ, PrivateRabbitMQCluster, answers_amqp
from tests.integration.flow import CONSUMER, Flow, assert_exactly_once, inbox, query, wait_until

pytestmark = pytest.mark.timeout(600)

# Users with no name, one per node, for the rules' owner match (in this namespace only).
UIDS = (64_101, 64_102, 64_103)
# How soon a node counts an unreachable peer as down (RabbitMQ's default is 60 s).
NET_TICKTIME_S = 8
EVENTS = 8_000  # 40 s of them: more than half after the victim's clients moved (16 s in)
EVENTS_PER_S = 200


@pytest.fixture(scope="module")
def namespace():
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(network_namespace())
        except NamespaceUnavailable as exc:
            pytest.skip(f"no network namespace of our own: {exc}")
        yield


@pytest.fixture(scope="module")
def cluster(namespace, tmp_path_factory):
    # The nodes' users must reach their directories: not under pytest's (its owner's only).
    directory = Path(tempfile.mkdtemp(prefix="ordermesh-partition-"))
    directory.chmod(0o711)
    running = PrivateRabbitMQCluster(directory, net_ticktime_s=NET_TICKTIME_S, uids=UIDS)
    try:
        running.start()
        yield running
    finally:
        running.remove()
        # The nodes' logs, kept with pytest's other files to read after a failure.
        shutil.copytree(directory, tmp_path_factory.mktemp("partition-nodes"), dirs_exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)


def cut_off(victim: PrivateRabbitMQ, others: list[PrivateRabbitMQ]) -> None:
    """Drops the Erlang distribution traffic between `victim` and `others`, both ways: what
    it sends to their distribution ports, what they send to its own, and what it answers on
    its own (connections the others opened). AMQP to every node still flows."""

    def drop(uid: int | None, port_flag: str, port: int) -> None:
        iptables("-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", str(uid),
                 port_flag, str(port), "-j", "DROP")  # fmt: skip

    for other in others:
        drop(victim.uid, "--dport", other.dist_port)
        drop(other.uid, "--dport", victim.dist_port)
    drop(victim.uid, "--sport", victim.dist_port)


def heal() -> None:
    iptables("-F", "OUTPUT")


async def test_a_node_cut_off_pauses_its_clients_move_and_every_event_is_handled_once(
    cluster, tmp_path
):
    flow = Flow(tmp_path, cluster.add_vhost("partition"), name="partition", rate=EVENTS_PER_S)
    producer_db, consumer_db = flow.producer_db, flow.consumer_db
    # The first 100 of the events declare the producer's exchange; then the rest.
    consumer, first, events = flow.consumer(), flow.producer(100), flow.producer(EVENTS)
    try:
        consumer.start()
        first.start()
        await wait_until(lambda: not first.running, 60, "the first events to be confirmed")
        started = time.time()
        events.start()
        await asyncio.sleep(5)

        victim = cluster.clients()["partition-consumer"]  # the consumer's node is cut off
        others = [node for node in cluster.nodes if node is not victim]
        witness = others[0]
        clients = {name for name, on in cluster.clients(witness).items() if on is victim}
        cut_at = time.time()
        cut_off(victim, others)
        await wait_until(lambda: not answers_amqp(victim.port), 90, "the victim to pause")
        paused_s = time.time() - cut_at
        await wait_until(
            lambda: (
                clients <= set(now := cluster.clients(witness))
                and all(now[name] is not victim for name in clients)
            ),
            60,
            "the victim's clients to be on the majority",
        )
        moved_s = time.time() - cut_at
        handled_cut = len(inbox(consumer_db))
        # The victim may count the others down (and pause) before they count it down.
        await wait_until(
            lambda: victim.node not in cluster.running_nodes(witness), 30, "the others to drop it"
        )
        # The majority goes on without it: the queue's leader, if it was the victim's replica,
        # is elected anew among the other two first, and a publisher's channel that lost a
        # send in the cut is replaced (ordermesh.broker).
        await wait_until(
            lambda: len(inbox(consumer_db)) > handled_cut, 30, "the majority to go on, cut off"
        )
        resumed_s = time.time() - cut_at

        healed_at = time.time()
        heal()
        cluster.wait_for_members(3, timeout_s=120)
        # Its replica of the queue restarts once the node is back (`noproc` until then): past
        # 60 s once on a loaded 2-core machine (a clean-checkout run on d48ac77), within the
        # bound the node itself has to return.
        cluster.wait_for_quorum(CONSUMER, vhost="partition", timeout_s=120)
        rejoined_s = time.time() - healed_at

        await wait_until(lambda: not events.running, 240, "the producer to confirm every event")
        await wait_until(lambda: len(inbox(consumer_db)) >= EVENTS, 240, "every event handled")
        await assert_exactly_once(producer_db, consumer_db, witness.vhost_url("partition"), EVENTS)
    finally:
        heal()
        for process in (consumer, first, events):
            process.stop()

    handled = sorted(at - started for (at,) in query(consumer_db, "SELECT processed_at FROM inbox")
                     if at >= started)  # fmt: skip
    stall = max(b - a for a, b in itertools.pairwise(handled))
    print(
        f"broker partition: {EVENTS} events handled once each; the cut-off node "
        f"paused {paused_s:.1f} s after the cut (net_ticktime {NET_TICKTIME_S} s), its "
        f"clients {sorted(clients)} on the majority after {moved_s:.1f} s, handling again "
        f"after {resumed_s:.1f} s, back in the "
        f"queue's quorum {rejoined_s:.1f} s after the heal; longest stall {stall:.1f} s"
    )
    assert clients, "no client was on the cut-off node: the test proved nothing"
