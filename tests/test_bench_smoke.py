"""The benchmark's primitives and reporting, with tiny counts against real servers.

Only the shape of the figures is asserted (counts, completeness, finite positive rates,
ordered percentiles): timings depend on the machine and are never asserted.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from bench import run_bench
from sandbox import bench, measure, processes
from sandbox.measure import Endpoint
from tests.conftest import REPO_ROOT, run

USER, PASSWORD = "app", "bench-smoke-pw"
LEAF_USER, LEAF_PASSWORD = "leaf-app", "bench-smoke-leaf"
SUBJECT = "ops.bench.smoke"


@dataclass(frozen=True)
class Pair:
    """A JetStream hub server with stream ``ops`` and a plain leafnode edge."""

    hub: Endpoint
    edge: Endpoint


def _conf(name: str, client: int, extra: dict[str, object]) -> dict[str, object]:
    return {
        "server_name": name,
        "host": "127.0.0.1",
        "port": client,
        "accounts": {"APP": {"users": [{"user": USER, "password": PASSWORD}], "jetstream": True}},
        **extra,
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("bench-smoke")
    hub_port, leaf_port, edge_port = processes.free_ports(3)
    leaf_auth = {"users": [{"user": LEAF_USER, "password": LEAF_PASSWORD, "account": "APP"}]}
    confs = {
        "hub": _conf(
            "smoke-hub",
            hub_port,
            {
                "jetstream": {"store_dir": str(base / "js"), "domain": "hub"},
                "leafnodes": {"host": "127.0.0.1", "port": leaf_port, "authorization": leaf_auth},
            },
        ),
        "edge": _conf(
            "smoke-edge",
            edge_port,
            {
                "leafnodes": {
                    "remotes": [
                        {
                            "urls": [f"nats://{LEAF_USER}:{LEAF_PASSWORD}@127.0.0.1:{leaf_port}"],
                            "account": "APP",
                        }
                    ]
                }
            },
        ),
    }
    started: list[tuple[int, Path]] = []
    try:
        for name, conf in confs.items():
            path = base / f"{name}.conf"
            path.write_text(json.dumps(conf))  # nats.conf accepts JSON
            child = processes.start_server(
                processes.nats_server_binary(), path, base / f"{name}.log", {}
            )
            started.append((child.pid, path))
        hub = Endpoint(f"nats://127.0.0.1:{hub_port}", USER, PASSWORD, "hub")
        edge = Endpoint(f"nats://127.0.0.1:{edge_port}", USER, PASSWORD, "edge")
        run(_create_stream(hub, edge))
        yield Pair(hub, edge)
    finally:
        processes.stop_many(started)


def _listening(url: str) -> bool:
    host, port = url.removeprefix("nats://").split(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


async def _create_stream(hub: Endpoint, edge: Endpoint) -> None:
    deadline = time.monotonic() + 20
    # Wait for the ports first: a refused nats.connect leaves a transport to the GC.
    while not (_listening(hub.url) and _listening(edge.url)):
        if time.monotonic() > deadline:
            raise AssertionError("the smoke servers did not listen within 20s")
        await asyncio.sleep(0.1)
    client = await nats.connect(hub.url, user=USER, password=PASSWORD, connect_timeout=2)
    try:
        await client.jetstream().add_stream(name="ops", subjects=["ops.>"], storage="file")
    finally:
        await client.close()
    # The edge's leafnode must be up before anything is published through it.
    while True:
        reply = None
        try:
            async with measure.connection(edge, name="smoke-wait") as edge_client:
                reply = await edge_client.request(SUBJECT, b"ping", timeout=1)
        except (nats.errors.Error, measure.MeasureError):
            pass
        if reply is not None and measure._is_ack(reply):
            return
        if time.monotonic() > deadline:
            raise AssertionError("the edge's leafnode did not connect within 20s")
        await asyncio.sleep(0.2)


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.nats
def test_fanout_delivers_every_message_to_every_subscriber(pair: Pair) -> None:
    figures = run(
        measure.fanout(pair.hub, "benchsubject", count=200, payload_size=256, subscribers=3)
    )
    assert figures.complete and figures.received == 600
    assert _finite_positive(figures.pub_msgs_per_sec) and _finite_positive(figures.sub_mb_per_sec)


@pytest.mark.nats
def test_acked_ingest_counts_every_ack_direct_and_through_the_edge(pair: Pair) -> None:
    direct, edge = (
        run(measure.acked_ingest(endpoint, SUBJECT, count=300, payload_size=4096, window=16))
        for endpoint in (pair.hub, pair.edge)
    )
    for figures in (direct, edge):
        assert (figures.sent, figures.stored, figures.errors) == (300, 300, 0)
        assert figures.complete and _finite_positive(figures.mb_per_sec)
    assert _finite_positive(edge.msgs_per_sec / direct.msgs_per_sec)


@pytest.mark.nats
def test_acked_ingest_counts_naks_and_stops_at_its_deadline(pair: Pair) -> None:
    # No stream holds this subject: every publish is answered "no responders".
    figures = run(
        measure.acked_ingest(
            pair.hub, "nostream.smoke", count=50, payload_size=16, window=8, timeout=5
        )
    )
    assert figures.stored == 0 and figures.errors == 50 and not figures.complete
    assert figures.first_error is not None and "503" in figures.first_error


@pytest.mark.nats
def test_fire_and_forget_waits_until_the_stream_holds_everything(pair: Pair) -> None:
    figures = run(
        measure.fire_and_forget(pair.edge, pair.hub, "ops", SUBJECT, count=500, payload_size=256)
    )
    assert figures.complete and figures.stored == 500


@pytest.mark.nats
def test_latency_percentiles_are_ordered(pair: Pair) -> None:
    figures = run(measure.ack_latency(pair.edge, SUBJECT, count=40, payload_size=256, warmup=5))
    assert figures.complete and figures.count == 40 and figures.errors == 0
    assert 0 < figures.p50_ms <= figures.p90_ms <= figures.p99_ms <= figures.max_ms


@pytest.mark.nats
def test_wait_for_stream_sees_a_backlog_arrive_and_purge_empties(pair: Pair) -> None:
    before = run(measure.stream_state(pair.hub, "ops"))
    since = time.perf_counter()
    run(measure.acked_ingest(pair.edge, SUBJECT, count=200, payload_size=64, window=32))
    figures = run(
        measure.wait_for_stream(
            pair.hub,
            "ops",
            start_seq=before.last_seq,
            target_seq=before.last_seq + 200,
            since=since,
        )
    )
    assert figures.complete and figures.events == 200
    run(measure.purge_stream(pair.hub, "ops"))
    assert run(measure.stream_state(pair.hub, "ops")).messages == 0


@pytest.mark.nats
def test_wait_for_stream_is_bounded_when_nothing_arrives(pair: Pair) -> None:
    last = run(measure.stream_state(pair.hub, "ops")).last_seq
    figures = run(
        measure.wait_for_stream(
            pair.hub,
            "ops",
            start_seq=last,
            target_seq=last + 10,
            since=time.perf_counter(),
            timeout=1,
        )
    )
    assert not figures.complete and figures.events == 0 and figures.first_progress_seconds is None


def test_payloads_have_the_exact_size_and_are_json_like() -> None:
    for size in (0, 1, 16, 256, 4096):
        assert len(measure.make_payload(size)) == size
    assert json.loads(measure.make_payload(256))["kind"] == "PipelineRun"


def test_percentile_and_median() -> None:
    samples = [float(v) for v in range(1, 101)]
    assert measure.percentile(samples, 50) == 50 and measure.percentile(samples, 99) == 99
    assert math.isnan(measure.percentile([], 50))
    assert measure.median([3.0, math.nan, 1.0, 2.0]) == 2.0


def test_acked_ingest_needs_a_window() -> None:
    with pytest.raises(ValueError, match="window"):
        run(
            measure.acked_ingest(
                Endpoint("nats://127.0.0.1:1"), SUBJECT, count=1, payload_size=1, window=0
            )
        )


def test_readme_block_replaces_only_between_the_markers() -> None:
    text = f"# t\nbefore\n{run_bench.START}\nold\n{run_bench.END}\nafter\n"
    updated = run_bench.replace_block(text, f"{run_bench.START}\nnew\n{run_bench.END}")
    assert updated == f"# t\nbefore\n{run_bench.START}\nnew\n{run_bench.END}\nafter\n"
    assert run_bench.replace_block("no markers", "x") is None


def test_program_evaluation_reports_each_edge_count() -> None:
    from bench import program_eval

    figures = program_eval.measure((1, 3), rounds=1)
    assert [f.edges for f in figures] == [1, 3]
    assert all(len(f.rounds) == 1 and _finite_positive(f.median_seconds) for f in figures)


@pytest.mark.nats
def test_bench_command_prints_one_json_object_with_the_headline_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.bench", "--quick", "--json", "--no-program-eval"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in (
        "directMsgsPerSec",
        "edgeMsgsPerSec",
        "ratio",
        "p50Ms",
        "p99Ms",
        "directP99Ms",
    ):
        assert isinstance(result[key], float) and result[key] > 0, key
    # A tiny backlog may arrive between two polls: then its rate is unknown (null).
    assert result["drainMsgsPerSec"] is None or result["drainMsgsPerSec"] > 0
    assert result["perRound"][0]["drain"]["events"] == 5_000
    assert result["rounds"] == 1 and result["complete"] is True
    assert result["programEval"] == {"skipped": "disabled (--no-program-eval)"}
    assert "round 1/1" in done.stderr  # rounds are shown, on stderr with --json
    assert "| Acked ingest" in bench.results_table(result)
