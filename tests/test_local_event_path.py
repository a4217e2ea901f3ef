"""The event path on the repo's stacks: hub of 3, edge-a (buffered), edge-b (plain).

What the runbook checks by hand every day: edges are joined, events published on an
edge land in the hub stream ``ops`` exactly once, ``sub "ops.>"`` on the hub sees them,
``stream info``/``subjects`` and ``server report jetstream`` look right.
"""

from __future__ import annotations

import os
import stat

import pytest
from conftest import run

from components.jetstream import connected
from components.stream_config import changed_keys
from sandbox import events, monitor
from sandbox.verify import verify

pytestmark = pytest.mark.nats


def test_every_edge_joins_the_hub_with_one_leaf_connection_per_account(production_topology):
    plan = production_topology.plan
    for edge in plan.edge_servers:
        assert monitor.leaf_accounts(edge.http_port) == ["APP", "SYS"]
    on_hub = [
        (leaf["name"], leaf["account"])
        for server in plan.hub_servers
        for leaf in monitor.leafz(server.http_port)
    ]
    assert sorted(on_hub) == [
        ("edge-a-nats-0", "APP"),
        ("edge-a-nats-0", "SYS"),
        ("edge-b-nats-0", "APP"),
        ("edge-b-nats-0", "SYS"),
    ]


def test_the_hub_stream_has_the_stack_config_and_sources_the_buffered_edge(production_topology):
    plan = production_topology.plan
    target = production_topology.hub_target("app")

    async def info():
        async with connected(target) as hub:
            return await events.stream_info(hub, target, "ops")

    live = run(info())
    assert changed_keys(plan.stream, live["config"]) == []
    assert live["config"]["num_replicas"] == 3 and live["config"]["storage"] == "file"
    assert [s["external"]["api"] for s in live["sources"]] == ["$JS.edge-a.API"]
    assert len(live["cluster"]["replicas"]) == 2


def test_events_published_on_each_edge_land_in_the_hub_stream_exactly_once(production_topology):
    topology = production_topology
    target = topology.hub_target("app")

    async def scenario():
        async with connected(target) as hub:
            start = await events.last_seq(hub, target, "ops") + 1
            sent = {}
            for edge in ("edge-a", "edge-b"):
                server = topology.plan.edge_server(edge).name
                ids = events.make_ids(edge, 5)
                async with connected(topology.target(server, "app")) as client:
                    await events.publish(client, f"ops.{edge}.test", ids)
                sent[edge] = ids
            return {
                edge: await events.wait_for_ids(
                    hub, target, "ops", f"ops.{edge}.test", ids, start, timeout=30
                )
                for edge, ids in sent.items()
            }

    counts = run(scenario())
    for edge, per_id in counts.items():
        assert sorted(per_id.values()) == [1] * 5, f"{edge}: {per_id}"


def test_a_hub_subscriber_sees_live_events_of_the_plain_edge_only(production_topology):
    # edge-a is buffered: its APP remote denies ops.> both ways, so its events reach the
    # hub only through the stream source, never as live core messages. A `sub "ops.>"` on
    # the hub therefore shows edge-b's events, while edge-a's are in the stream.
    topology = production_topology
    hub_servers = [s.name for s in topology.plan.hub_servers]
    target = topology.hub_target("app")

    async def scenario():
        listener = topology.target(hub_servers[0], "app")
        peers = [topology.target(name, "app") for name in hub_servers[1:]]
        async with (
            connected(target) as hub,
            events.live_subscription(listener, "ops.>", peers=peers) as live,
        ):
            start = await events.last_seq(hub, target, "ops") + 1
            ids = {}
            for edge in ("edge-a", "edge-b"):
                ids[edge] = events.make_ids(edge, 3)
                server = topology.plan.edge_server(edge).name
                async with connected(topology.target(server, "app")) as client:
                    await events.publish(client, f"ops.{edge}.live", ids[edge])
            stored = await events.wait_for_ids(
                hub, target, "ops", "ops.*.live", ids["edge-a"] + ids["edge-b"], start, timeout=30
            )
            return ids, stored, live.ids()

    ids, stored, seen = run(scenario())
    assert [seen[i] for i in ids["edge-b"]] == [1, 1, 1]
    assert [seen[i] for i in ids["edge-a"]] == [0, 0, 0]
    assert [stored[i] for i in ids["edge-a"] + ids["edge-b"]] == [1] * 6


def test_the_system_account_sees_every_hub_server_and_edge(production_topology):
    async def report():
        async with connected(production_topology.hub_target("admin")) as admin:
            return await events.server_ping(admin, events.JSZ_PING, expected=5)

    replies = run(report())
    by_name = {r["server"]["name"]: r for r in replies}
    assert sorted(by_name) == ["edge-a-nats-0", "edge-b-nats-0", "nats-0", "nats-1", "nats-2"]
    assert {by_name[n]["server"]["domain"] for n in ("nats-0", "nats-1", "nats-2")} == {"hub"}
    assert by_name["edge-a-nats-0"]["server"]["domain"] == "edge-a"
    assert by_name["edge-b-nats-0"]["data"].get("disabled") is True  # plain edge: no JetStream


def test_verify_passes_and_its_json_is_stable(production_topology):
    report = verify(production_topology, count=2, timeout=30)
    assert report.ok, [c for c in report.checks if not c.ok]
    data = report.to_json()
    assert set(data) == {"version", "ok", "failed", "checks", "events", "stream", "servers"}
    assert data["version"] == 1 and data["failed"] == []
    names = [c["name"] for c in data["checks"]]
    assert names == [
        "servers running",
        "leafnodes",
        "events edge-a",
        "events edge-b",
        "live sub ops.> on the hub",
        "stream",
        "stream sources",
        "system view",
        "hub jetstream",
    ]
    by_edge = {e["edge"]: e for e in data["events"]}
    assert by_edge["edge-a"]["acked_by"] == "ops@edge-a"  # stored first in the edge buffer
    assert by_edge["edge-b"]["acked_by"] == "ops@hub"
    assert by_edge["edge-a"]["live_seen"] == 0 and by_edge["edge-b"]["live_seen"] == 2
    assert data["stream"]["subject_counts"]["ops.edge-a.verify"] >= 2


def test_status_shows_every_server_running(production_topology):
    rows = production_topology.status()
    assert [(r.name, r.state) for r in rows] == [
        ("nats-0", "running"),
        ("nats-1", "running"),
        ("nats-2", "running"),
        ("edge-a-nats-0", "running"),
        ("edge-b-nats-0", "running"),
    ]
    assert all(r.client_url.startswith("nats://127.0.0.1:") for r in rows)


def test_generated_credentials_are_kept_in_owner_only_files(production_topology):
    folder = production_topology.credentials_file("hub").parent
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for stack in ("hub", "edge-a", "edge-b"):
        path = production_topology.credentials_file(stack)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
