"""Store-and-forward edges: no event is lost while the hub or the link is down.

Real nats-server processes on 127.0.0.1, booted from the stack files. The disruptive
tests share one topology of the repo's stacks (hub of 3 with file storage and stream R3,
edge-a buffered, edge-b plain); after each test every server is running again. Each
test publishes on its own subjects (``ops.<edge>.outage.<run>``), so events of other
tests are never counted. Nothing here asserts on timing: every wait is a bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import (
    BOOT_TIMEOUT,
    REPO_STACKS,
    run,
    servers_running_from,
    wait_until,
    write_stacks,
)
from rich.console import Console

from components import jetstream
from components.jetstream import connected
from sandbox import cli, monitor, outage
from sandbox.outage import Delivery, Publisher, analyse
from sandbox.stacks import load_stacks
from sandbox.topology import Topology

DRAIN_TIMEOUT = 120.0  # a source resumes after its stall check, tens of seconds on 2.10
EXACTLY_ONCE = {"lost": 0, "duplicated": 0, "out_of_order": 0}


def outcome(delivery: Delivery) -> dict[str, int]:
    return {
        "lost": delivery.lost,
        "duplicated": delivery.duplicated,
        "out_of_order": delivery.out_of_order,
    }


# ---------------------------------------------------------------------------- counting (pure)


def test_analyse_counts_lost_duplicated_and_reordered_events():
    published = ["e-0", "e-1", "e-2", "e-3", "e-4"]
    stored = ["e-0", "e-2", "other-run-7", None, "e-1", "e-2", "e-4"]
    delivery = analyse(published, stored)
    assert delivery == Delivery(
        events=5, delivered=4, lost=1, duplicated=1, out_of_order=1, lost_ids=("e-3",)
    )
    assert not delivery.ok
    assert analyse(published, published).ok
    assert analyse([], ["x"]) == outage.NOTHING


def test_the_report_is_ok_only_with_nothing_lost_duplicated_or_unacked():
    good = Delivery(events=10, delivered=10, lost=0, duplicated=0, out_of_order=0)
    report = outage.OutageReport(
        cut="hub",
        run="r1",
        edges=["edge-a"],
        stopped=["nats-0"],
        published_before=1,
        published_during=9,
        acked_during=9,
        acked_by_during={"ops@edge-a": 9},
        delivery=good,
        drain_seconds=1.5,
        restart_seconds=1.0,
        stream_redeclared=False,
        link_was_cut=True,
    )
    assert report.ok
    data = report.to_json()
    assert {"events", "delivered", "lost", "duplicated", "outOfOrder", "drainSeconds"} <= set(data)
    assert (data["events"], data["delivered"], data["lost"], data["duplicated"]) == (10, 10, 0, 0)
    lost = Delivery(events=10, delivered=9, lost=1, duplicated=0, out_of_order=0)
    assert not dataclasses.replace(report, delivery=lost).ok
    assert not dataclasses.replace(report, acked_during=8).ok  # a publish went unacked
    assert not dataclasses.replace(report, drain_seconds=None).ok  # never drained in time
    assert not dataclasses.replace(report, errors=["edge-a-nats-0: refused"]).ok

    console = Console(record=True, width=120)
    outage.print_report(console, report)
    text = console.export_text()
    assert "9 acked: 9 by ops@edge-a" in text
    assert "10/10 delivered, 0 lost, 0 duplicated, 0 out of order" in text
    assert "drain: 1.50s" in text and "outage: OK" in text


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def drill_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The repo's stacks, booted once for the tests that stop and start its servers."""
    stacks = load_stacks(REPO_STACKS, ["hub", "edge-a", "edge-b"])
    state_dir = tmp_path_factory.mktemp("store-and-forward")
    topology = Topology.boot(stacks, state_dir, timeout=BOOT_TIMEOUT)
    try:
        yield topology
    finally:
        topology.down()
        assert servers_running_from(state_dir) == []


@pytest.fixture
def topology(drill_topology: Topology) -> Iterator[Topology]:
    """The shared topology; whatever a test stopped is running again afterwards."""
    yield drill_topology
    restore(drill_topology)


def restore(topology: Topology) -> None:
    # Also when every hub server runs: it waits until the whole hub is ready again
    # (stream leaders elected, no silent follower), so the next drill starts clean.
    topology.start_hub()
    for server in topology.plan.edge_servers:
        topology.start_server(server.name)  # no-op when it runs


def publishers(topology: Topology, count: int, *edges: str) -> list[Publisher]:
    label = uuid.uuid4().hex[:8]
    return [outage.new_publisher(topology, edge, count, label) for edge in edges]


def publish(topology: Topology, publisher: Publisher, start: int, stop: int) -> dict[str, int]:
    return dict(run(outage.publish_range(topology, publisher, start, stop, timeout=5.0)))


def deliveries(topology: Topology, sent: list[Publisher]) -> dict[str, Delivery]:
    """Wait (bounded) until the hub stream holds every acked event, then count them."""

    async def scenario() -> dict[str, Delivery]:
        await outage.wait_stored(topology, sent, timeout=DRAIN_TIMEOUT)
        return await outage.count_deliveries(topology, sent)

    return run(scenario())


def hub_count(topology: Topology, subject: str) -> int | None:
    """Messages on ``subject`` in the hub stream (None: there is no stream)."""

    async def ask() -> int | None:
        async with connected(topology.hub_target("app")) as hub:
            counts = await outage.subject_counts(hub, "ops", subject)
        return None if counts is None else counts.get(subject, 0)

    return run(ask())


# ---------------------------------------------------------------------------- drills


@pytest.mark.nats
def test_outage_drill_every_event_arrives_once_in_order_after_the_hub_returns(topology):
    report = outage.drill(topology, events_per_edge=500, before=100, cut="hub")

    assert report.errors == []
    assert report.stopped == ["nats-0", "nats-1", "nats-2"]
    assert report.link_was_cut
    # While every hub server was down, the edge's own stream acked every publish.
    assert report.acked_during == report.published_during == 400
    assert report.acked_by_during == {"ops@edge-a": 400}
    assert (report.delivery.events, report.delivery.delivered) == (500, 500)
    assert outcome(report.delivery) == EXACTLY_ONCE
    assert report.drain_seconds is not None and not report.stream_redeclared
    assert report.ok
    # Exactly N+M messages on the run's subject, nothing else.
    assert hub_count(topology, f"ops.edge-a.outage.{report.run}") == 500


@pytest.mark.nats
def test_link_drill_the_edge_buffers_while_only_its_leafnode_link_is_cut(topology):
    # edge-a's leafnodes dial nats-0 only: stopping it cuts the link while the hub keeps
    # two of three servers, its meta leader and the stream's quorum.
    report = outage.drill(topology, events_per_edge=300, before=50, cut="link")

    assert report.stopped == [topology.plan.edge_server("edge-a").hub_server] == ["nats-0"]
    assert report.link_was_cut
    assert report.errors == []
    assert report.acked_by_during == {"ops@edge-a": 250}
    assert (report.delivery.events, report.delivery.delivered) == (300, 300)
    assert outcome(report.delivery) == EXACTLY_ONCE
    assert report.ok
    assert hub_count(topology, f"ops.edge-a.outage.{report.run}") == 300


@pytest.mark.nats
def test_restarting_the_edge_server_loses_and_repeats_nothing(topology):
    # The other way to bounce the link: restart the buffered edge itself (its remotes
    # reconnect, its file-storage stream keeps what the hub had not sourced yet).
    edge = topology.plan.edge_server("edge-a").name
    (sent,) = publishers(topology, 400, "edge-a")
    assert publish(topology, sent, 0, 200) == {"ops@edge-a": 200}
    topology.stop_server(edge)
    hub_side = topology.plan.server(topology.plan.edge_server("edge-a").hub_server)
    wait_until(
        lambda: edge not in {leaf["name"] for leaf in monitor.leafz(hub_side.http_port)},
        "the hub noticing that edge-a's leafnode connections are gone",
    )
    topology.start_server(edge)  # waits until its leafnodes are connected again
    assert publish(topology, sent, 200, 400) == {"ops@edge-a": 200}

    found = deliveries(topology, [sent])["edge-a"]
    assert (found.events, found.delivered) == (400, 400)
    assert outcome(found) == EXACTLY_ONCE
    assert hub_count(topology, sent.subject) == 400


@pytest.mark.nats
def test_mixed_edges_publishing_at_once_are_each_stored_exactly_once(topology):
    buffered, plain = publishers(topology, 400, "edge-a", "edge-b")

    async def both() -> list[object]:
        return await asyncio.gather(
            outage.publish_range(topology, buffered, 0, 400, timeout=5.0),
            outage.publish_range(topology, plain, 0, 400, timeout=5.0),
        )

    acks = run(both())
    assert [dict(a) for a in acks] == [{"ops@edge-a": 400}, {"ops@hub": 400}]

    found = deliveries(topology, [buffered, plain])
    for edge in ("edge-a", "edge-b"):
        assert (found[edge].events, found[edge].delivered) == (400, 400), edge
        assert outcome(found[edge]) == EXACTLY_ONCE, edge
    # The reason it holds: edge-a's APP link denies ops.> both ways, so the plain edge's
    # events never enter edge-a's own stream (from where the hub would source them again).
    assert edge_stream_count(topology, "edge-a", plain.subject) == 0
    assert edge_stream_count(topology, "edge-a", buffered.subject) == 400


def edge_stream_count(topology: Topology, edge: str, subject: str) -> int:
    target = topology.target(topology.plan.edge_server(edge).name, "app")

    async def ask() -> int:
        # From a client of the edge, $JS.API is the edge's own JetStream (its domain).
        async with connected(target) as client:
            counts = await outage.subject_counts(client, "ops", subject)
        assert counts is not None, f"{edge} has no buffer stream"
        return counts.get(subject, 0)

    return run(ask())


@pytest.mark.nats
def test_losing_one_hub_server_while_edges_publish_loses_nothing(topology):
    # The hardest single loss: the stream's leader, on a server neither edge dials (so
    # both keep their links and publish on throughout).
    dialled = {s.hub_server for s in topology.plan.edge_servers}
    victim = next(s.name for s in topology.plan.hub_servers if s.name not in dialled)
    move_stream_leader(topology, victim)
    buffered, plain = publishers(topology, 600, "edge-a", "edge-b")

    async def publish_while_losing_a_server() -> dict[str, object]:
        jobs = [
            # The buffered edge's own stream acks throughout. The plain edge's publishes
            # find no stream for the moment a new leader is elected: like any careful
            # publisher it sends those again, with Nats-Msg-Id so a repeat is dropped.
            asyncio.create_task(outage.publish_range(topology, buffered, 0, 600, timeout=5.0)),
            asyncio.create_task(
                outage.publish_range(topology, plain, 0, 600, timeout=5.0, retry_for=30.0)
            ),
        ]
        await wait_for(lambda: len(plain.acked) >= 150 and len(buffered.acked) >= 150)
        await asyncio.to_thread(topology.stop_server, victim)
        await asyncio.gather(*jobs)
        # Still available with one server gone: a new leader serves the stream (asked
        # until one is named: a re-election may still be settling right now).
        target = topology.hub_target("app")
        deadline = time.monotonic() + 30
        leader = ""
        while not leader and time.monotonic() < deadline:
            info = await jetstream.stream_info(target, "ops")
            leader = ((info or {}).get("cluster") or {}).get("leader", "")
            await asyncio.sleep(0 if leader else 0.2)
        return {"leader": leader, "running": topology.running(victim)}

    during = run(publish_while_losing_a_server())
    assert during["running"] is False
    assert during["leader"] not in ("", victim)

    assert (buffered.error, plain.error) == ("", "")  # every publish was acked
    assert len(buffered.acked) == len(plain.acked) == 600
    found = deliveries(topology, [buffered, plain])
    for edge in ("edge-a", "edge-b"):
        assert (found[edge].events, found[edge].delivered) == (600, 600), edge
        assert outcome(found[edge]) == EXACTLY_ONCE, edge


async def wait_for(ready, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not ready within {timeout}s")
        await asyncio.sleep(0.01)


def move_stream_leader(topology: Topology, wanted: str, attempts: int = 20) -> None:
    """Step the ``ops`` leader down until ``wanted`` leads (2.10 cannot name the next one)."""
    target = topology.hub_target("app")

    async def leader() -> str:
        info = await jetstream.stream_info(target, "ops")
        return info["cluster"].get("leader", "")

    async def move() -> str:
        current = ""
        for _ in range(attempts):
            current = await leader()
            if current == wanted:
                return current
            async with connected(target) as hub:
                await jetstream.api(hub, target, "STREAM.LEADER.STEPDOWN.ops")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # a new leader within a bounded wait
                await asyncio.sleep(0.2)
                new = await leader()
                if new and new != current:
                    break
        return await leader()

    assert run(move()) == wanted


# ---------------------------------------------------------------------------- memory-only hub


@pytest.fixture
def memory_stacks(tmp_path: Path) -> Path:
    """The seed's hub: 3 servers, memory store only, stream ops in memory (R3); edge-a."""
    directory = write_stacks(
        tmp_path / "memory-stacks", hub_replicas=3, edges={"edge-a": {"buffered": True}}
    )
    path = directory / "Pulumi.hub.yaml"
    document = yaml.safe_load(path.read_text())
    config = document["config"]
    config["ops-nats:hub"]["jetstream"] = {"memoryStore": "64Mi", "fileStore": {"enabled": False}}
    config["ops-nats:stream"]["storage"] = "memory"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


@pytest.mark.nats
def test_a_memory_hub_loses_its_stream_and_the_redeclared_one_resources_the_edges(
    boot, memory_stacks
):
    topology = boot(load_stacks(memory_stacks))
    target = topology.hub_target("app")
    (sent,) = publishers(topology, 300, "edge-a")
    assert publish(topology, sent, 0, 100) == {"ops@edge-a": 100}
    assert deliveries(topology, [sent])["edge-a"].delivered == 100

    # A full restart of the hub (pods re-created: no volume, so nothing of JetStream is
    # left on disk, not even the cluster's record of the stream).
    topology.stop_hub()
    for server in topology.plan.hub_servers:
        shutil.rmtree(server.store_dir, ignore_errors=True)
    topology.start_hub()

    # The stream code notices: no stream (what makes `pulumi up --refresh` forget it).
    assert run(jetstream.stream_info(target, "ops")) is None
    assert hub_count(topology, sent.subject) is None
    # Meanwhile the buffered edge keeps acking from its own stream.
    assert publish(topology, sent, 100, 300) == {"ops@edge-a": 200}

    topology.ensure_streams()  # the re-declaration `pulumi up` makes

    live = run(jetstream.stream_info(target, "ops"))
    assert [s["external"]["api"] for s in live["config"]["sources"]] == ["$JS.edge-a.API"]
    found = deliveries(topology, [sent])["edge-a"]
    assert (found.events, found.delivered) == (300, 300)  # the first 100 again, and the rest
    assert outcome(found) == EXACTLY_ONCE
    assert hub_count(topology, sent.subject) == 300


@pytest.mark.nats
def test_the_refreshed_stream_resource_forgets_the_lost_stream_and_creates_it_again(
    boot, memory_stacks
):
    provider_module = pytest.importorskip("components.stream_resource")
    topology = boot(load_stacks(memory_stacks))
    target = topology.hub_target("app")
    props = {
        "servers": list(target.servers),
        "user": target.user,
        "password": target.password,
        "config": topology.plan.stream,
        "connect_timeout": 30.0,
    }
    (sent,) = publishers(topology, 50, "edge-a")
    assert publish(topology, sent, 0, 50) == {"ops@edge-a": 50}
    assert deliveries(topology, [sent])["edge-a"].delivered == 50
    topology.stop_hub()
    for server in topology.plan.hub_servers:
        shutil.rmtree(server.store_dir, ignore_errors=True)
    topology.start_hub()

    provider = provider_module.JetStreamStreamProvider()
    assert provider.read("ops", props).id is None  # refresh drops it from the state ...
    provider.create(props)  # ... so `pulumi up` creates it again
    found = deliveries(topology, [sent])["edge-a"]
    assert (found.delivered, outcome(found)) == (50, EXACTLY_ONCE)


@pytest.mark.nats
def test_a_memory_hub_restarted_in_place_resources_its_empty_stream_once(boot, memory_stacks):
    # Servers restarted with their disk (a container restart in the same pod): the
    # cluster still knows the stream and re-creates it empty; it sources edge-a again
    # from the start, and a re-declaration on top of that adds nothing twice.
    topology = boot(load_stacks(memory_stacks))
    (sent,) = publishers(topology, 200, "edge-a")
    assert publish(topology, sent, 0, 100) == {"ops@edge-a": 100}
    assert deliveries(topology, [sent])["edge-a"].delivered == 100
    topology.stop_hub()
    assert publish(topology, sent, 100, 200) == {"ops@edge-a": 100}
    topology.start_hub()
    topology.ensure_streams()

    found = deliveries(topology, [sent])["edge-a"]
    assert (found.events, found.delivered) == (200, 200)
    assert outcome(found) == EXACTLY_ONCE
    assert hub_count(topology, sent.subject) == 200


# ---------------------------------------------------------------------------- the command


def outage_command(*argv: str) -> int:
    """``python -m sandbox outage ...`` (the exit code; output goes to capsys)."""
    return cli.main(["outage", *argv])


@pytest.mark.nats
def test_the_outage_command_boots_drills_reports_json_and_cleans_up(tmp_path, capsys):
    state_dir = tmp_path / "state"
    code = outage_command(
        "--events",
        "200",
        "--json",
        "--stacks-dir",
        str(REPO_STACKS),
        "--state-dir",
        str(state_dir),
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    data = json.loads(out)
    assert {"events", "delivered", "lost", "duplicated", "outOfOrder", "drainSeconds"} <= set(data)
    assert (data["events"], data["delivered"], data["lost"], data["duplicated"]) == (200, 200, 0, 0)
    assert data["outOfOrder"] == 0 and data["drainSeconds"] is not None
    assert data["edges"] == ["edge-a"]  # the hub and the buffered edges only
    assert data["stoppedServers"] == ["nats-0", "nats-1", "nats-2"]
    assert data["ackedDuringOutage"] == 180 and data["ackedByDuringOutage"] == {"ops@edge-a": 180}
    assert servers_running_from(state_dir) == []  # it stopped what it started


@pytest.mark.nats
def test_the_outage_command_drills_a_running_sandbox_and_leaves_it_up(boot, tmp_path, capsys):
    # A one-server memory hub: the restart loses the stream, the drill re-declares it.
    stacks_dir = write_stacks(tmp_path / "stacks", edges={"edge-a": {"buffered": True}})
    path = stacks_dir / "Pulumi.hub.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["ops-nats:hub"]["jetstream"]["fileStore"] = {"enabled": False}
    document["config"]["ops-nats:stream"]["storage"] = "memory"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    state_dir = tmp_path / "up"
    boot(load_stacks(stacks_dir), state_dir=state_dir)
    try:
        code = outage_command("--events", "100", "--json", "--state-dir", str(state_dir))
        out, err = capsys.readouterr()
        assert code == 0, out + err
        data = json.loads(out)
        assert data["streamRedeclared"] is True
        assert (data["delivered"], data["lost"], data["duplicated"]) == (100, 0, 0)
        attached = Topology.attach(state_dir)
        assert all(attached.running(s.name) for s in attached.plan.servers)
    finally:
        # The drill restarted the hub: its pids are in state.json, not in the fixture's object.
        Topology.attach(state_dir).down()
    assert servers_running_from(state_dir) == []


def test_the_outage_command_refuses_more_events_before_than_in_all(capsys):
    assert outage_command("--events", "10", "--before", "11") == 2
    assert "--before 11 is more than --events 10" in capsys.readouterr().err
