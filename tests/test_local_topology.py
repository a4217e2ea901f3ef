"""Stopping and starting servers of a running topology (the API ``outage`` builds on)."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import run, servers_running_from, write_stacks

from components.jetstream import connected
from sandbox import events
from sandbox.stacks import load_stacks
from sandbox.verify import verify

pytestmark = pytest.mark.nats


@pytest.fixture
def hub_of_three(tmp_path, boot):
    stacks = write_stacks(tmp_path / "stacks", hub_replicas=3)
    return boot(load_stacks(stacks))


def _stored(topology, subject, ids, start):
    target = topology.hub_target("app")

    async def count():
        async with connected(target) as hub:
            return await events.wait_for_ids(hub, target, "ops", subject, ids, start, timeout=30)

    return run(count())


def _last_seq(topology):
    target = topology.hub_target("app")

    async def last():
        async with connected(target) as hub:
            return await events.last_seq(hub, target, "ops")

    return run(last())


def _publish(topology, server, subject, ids):
    async def send():
        async with connected(topology.target(server, "app")) as client:
            return await events.publish(client, subject, ids)

    return run(send())


def test_one_hub_server_can_stop_and_rejoin_while_events_keep_flowing(hub_of_three):
    topology = hub_of_three
    assert topology.stop_server("nats-2")
    assert {r.name: r.state for r in topology.status()}["nats-2"] == "stopped"

    start = _last_seq(topology) + 1
    ids = events.make_ids("edge-b", 3)
    _publish(topology, "edge-b-nats-0", "ops.edge-b.during", ids)
    assert list(_stored(topology, "ops.edge-b.during", ids, start).values()) == [1, 1, 1]

    topology.start_server("nats-2")
    assert verify(topology, count=1).ok


def test_a_buffered_edge_keeps_events_while_the_whole_hub_is_down(hub_of_three):
    topology = hub_of_three
    start = _last_seq(topology) + 1
    topology.stop_hub()
    assert [r.state for r in topology.status() if r.role == "hub"] == ["stopped"] * 3

    ids = events.make_ids("edge-a", 3)
    acks = _publish(topology, "edge-a-nats-0", "ops.edge-a.outage", ids)
    assert {a["domain"] for a in acks} == {"edge-a"}  # stored on the edge meanwhile

    topology.start_hub()
    assert list(_stored(topology, "ops.edge-a.outage", ids, start).values()) == [1, 1, 1]


def test_a_hub_server_that_hangs_is_restarted_while_the_others_stay_ready(hub_of_three):
    # nats-server 2.10 sometimes leaves one hub server unready for good (sandbox.hub_health);
    # a stopped process is the straggler we can make on purpose.
    topology = hub_of_three
    topology.timeout = 30.0  # restarts a straggler after 5 s
    messages: list[str] = []
    topology.progress = messages.append
    hung = topology.pids["nats-1"]
    os.kill(hung, signal.SIGSTOP)
    try:
        topology.start_hub()  # every hub server runs: it only waits until the cluster is ready
    finally:
        if topology.pids.get("nats-1") == hung:
            os.kill(hung, signal.SIGCONT)
    assert topology.pids["nats-1"] != hung
    assert any(m.startswith("nats-1 alone stays unready") for m in messages), messages
    assert all(r.state == "running" for r in topology.status())
    assert verify(topology, count=1).ok


def test_down_stops_every_server_it_started(hub_of_three):
    topology = hub_of_three
    assert sorted(topology.down()) == [
        "edge-a-nats-0",
        "edge-b-nats-0",
        "nats-0",
        "nats-1",
        "nats-2",
    ]
    assert servers_running_from(topology.state_dir) == []
