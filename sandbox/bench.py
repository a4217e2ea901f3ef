"""``python -m sandbox bench``: the event path measured on the local topology, vs. direct.

Boots its own topology from the stack files (a throwaway state directory, free ports,
so a sandbox that is ``up`` is never touched), then runs every item round by round,
interleaving the paths inside a round and alternating which path goes first, and
reports medians (the machines are noisy):

1. runbook bench: 1 publisher, 10 subscribers on ``benchsubject`` (hub): msgs/s, MB/s;
2. acked ingest into the hub stream: a window of in-flight acks, directly on the hub
   vs. on a plain (non-buffered) edge; 256 B and 4 KiB; fire-and-forget too;
3. latency of a synchronous acked publish, direct vs. through the edge;
4. a buffered edge: its local acked rate while the hub is down, then how fast the
   hub stream drains a 100k-event backlog once the hub is back;
5. the Pulumi program: hub stack evaluation time with 1, 10, 50 edges (needs Pulumi;
   skipped with a note where only local mode is installed).

"Direct" publishes go to the hub server the plain edge's leafnode dials (the entry
server), so the two paths differ by the leafnode hop only; the stream leader is kept
off that server (stepped down after each election) so that every round and every boot
has the same route hop. Acked ingest runs each path in interleaved slices (A B B A...);
ratios are medians of per-round ratios. The stream is purged between measurements so
every round starts from the same state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sandbox import measure
from sandbox.measure import Endpoint, median
from sandbox.plan import Renderer, ServerPlan, mirror_renderer
from sandbox.stacks import StackError, StackSet, load_stacks
from sandbox.topology import Topology

Say = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent
BENCH_SUBJECT = "benchsubject"  # the runbook's `nats bench benchsubject --pub 1 --sub 10`
SUBJECT = "ops.bench.events"  # inside the hub stream's ops.>
TARGET_RATIO = 0.9
TARGET_HOP_P99_MS = 1.0
TARGET_DRAIN_RATIO = 0.5
MIN_ROUNDS = 3
# Bound of each wait of a boot or hub restart: a healthy one takes 1-8 s here.
SETTLE_TIMEOUT = 30.0
CLIENT = "client"  # this process, in CPU figures


@dataclass(frozen=True)
class BenchOptions:
    """Counts are fixed so that a run takes < 3 minutes on 2 cores (see README)."""

    rounds: int = 7
    payload: int = 256
    large_payload: int = 4096
    fanout_count: int = 20_000
    subscribers: int = 10
    ingest_count: int = 48_000  # per path and round, in ``segments`` slices
    large_count: int = 10_000
    fire_count: int = 50_000
    latency_count: int = 2_000
    backlog: int = 100_000
    # In-flight acks per publisher. 4096 (nats-py's publish_async default is 4000):
    # larger windows batch more per write, which is what the extra server of the edge
    # path costs least with (README "Benchmarks": 64 -> 0.78x, 256 -> 0.82-0.90x,
    # 4096 -> 0.87-0.94x).
    window: int = 4096
    segments: int = 4  # acked ingest: each path's count in this many interleaved slices
    # Where the stream leader sits: off the server both paths enter the hub by (as for
    # 2 clients in 3 on Kubernetes, whose NodePort spreads them), or on it.
    leader_on_entry: bool = False
    program_edges: tuple[int, ...] = (1, 10, 50)
    program_eval: bool = True
    timeout: float = 120.0  # bound of any single measurement

    @classmethod
    def quick(cls) -> BenchOptions:
        """Tiny counts: checks that everything runs (figures mean little)."""
        return cls(
            rounds=1,
            fanout_count=500,
            subscribers=3,
            ingest_count=500,
            large_count=100,
            fire_count=500,
            latency_count=50,
            backlog=5_000,
            segments=2,
            window=64,
            program_edges=(1, 2),
            timeout=60.0,
        )


@dataclass
class Round:
    """Every figure of one round (the JSON ``perRound`` entries)."""

    index: int
    fanout: measure.FanoutFigures | None = None
    acked: dict[str, measure.IngestFigures] = field(default_factory=dict)  # direct, edge
    acked_large: dict[str, measure.IngestFigures] = field(default_factory=dict)
    fire: dict[str, measure.IngestFigures] = field(default_factory=dict)
    latency: dict[str, measure.LatencyFigures] = field(default_factory=dict)
    edge_local: measure.IngestFigures | None = None
    leader: str | None = None  # the stream leader during the round
    # Acked 256 B: CPU microseconds per message, by path and process.
    cpu_us_per_msg: dict[str, dict[str, float]] = field(default_factory=dict)
    drain: measure.WaitFigures | None = None
    hub_restart_seconds: float = math.nan


@dataclass(frozen=True)
class Paths:
    """Who publishes where in this topology."""

    direct: Endpoint  # the hub server the plain edge dials
    direct_server: str  # its name: the stream leader is kept off it (see place_leader)
    edge: Endpoint  # the plain edge (events cross the leafnode, acks come back)
    edge_server: str  # its server name
    hub_servers: tuple[str, ...]
    buffered: Endpoint  # the buffered edge (acks from its local stream)
    stream: str


def run_bench(
    options: BenchOptions,
    *,
    stacks_dir: Path = ROOT / "stacks",
    state_dir: Path | None = None,
    render: Renderer = mirror_renderer,
    stacks: StackSet | None = None,
    say: Say = print,
) -> dict[str, Any]:
    """Boot, measure every round, tear down; the result is what ``--json`` prints."""
    stack_set = stacks or load_stacks(stacks_dir)
    with contextlib.ExitStack() as cleanup:
        if state_dir is None:
            state_dir = Path(
                cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ops-bench-"))
            )
        say(f"booting the topology in {state_dir}")
        started = time.perf_counter()
        topology = Topology.boot(stack_set, state_dir, render=render, timeout=SETTLE_TIMEOUT)
        cleanup.callback(topology.down)
        say(f"booted {len(topology.plan.servers)} servers in {time.perf_counter() - started:.1f}s")
        paths = choose_paths(topology)
        rounds: list[Round] = []
        for index in range(1, options.rounds + 1):
            rounds.append(run_round(topology, paths, options, index, say))
        result = summarize(rounds, options, paths)
        result["settings"] = describe_settings(topology, options)
    result["programEval"] = program_eval(options, say)
    result["machine"] = machine()
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def choose_paths(topology: Topology) -> Paths:
    plan = topology.plan
    plain = [e for e in plan.edges if e not in plan.buffers]
    buffered = [e for e in plan.edges if e in plan.buffers]
    if not plain or not buffered:
        raise StackError(
            "bench needs one plain and one buffered edge among the stacks "
            f"(plain: {plain or 'none'}, buffered: {buffered or 'none'}); "
            "use the example stacks in stacks/ (edge-a buffered, edge-b plain)"
        )
    edge = plan.edge_server(plain[0])
    assert edge.hub_server is not None
    return Paths(
        direct=_endpoint(topology, plan.server(edge.hub_server), "direct"),
        direct_server=edge.hub_server,
        edge=_endpoint(topology, edge, f"edge {plain[0]}"),
        edge_server=edge.name,
        hub_servers=tuple(s.name for s in plan.hub_servers),
        buffered=_endpoint(topology, plan.edge_server(buffered[0]), f"buffered {buffered[0]}"),
        stream=str(plan.stream["name"]),
    )


def run_round(
    topology: Topology, paths: Paths, options: BenchOptions, index: int, say: Say
) -> Round:
    r = Round(index)
    # Alternate who goes first: a path that always runs second inherits the first one's
    # page cache, compactions and CPU frequency.
    order = ("direct", "edge") if index % 2 else ("edge", "direct")
    endpoint = {"direct": paths.direct, "edge": paths.edge}
    timeout = options.timeout
    r.leader = place_leader(paths, options, timeout)
    say(f"round {index}/{options.rounds} (stream leader {r.leader}, entry {paths.direct_server})")

    # A fresh loop per measurement: the topology's own calls (stop/start, stream
    # declarations) run their own loops and must not be nested in ours.
    r.fanout = asyncio.run(
        measure.fanout(
            paths.direct,
            BENCH_SUBJECT,
            count=options.fanout_count,
            payload_size=options.payload,
            subscribers=options.subscribers,
            timeout=timeout,
        )
    )
    f = r.fanout
    say(
        f"  runbook bench 1 pub/{f.subscribers} sub: pub {f.pub_msgs_per_sec:,.0f} msgs/s "
        f"{f.pub_mb_per_sec:.1f} MB/s, sub aggregate {f.sub_msgs_per_sec:,.0f} msgs/s "
        f"{f.sub_mb_per_sec:.1f} MB/s{_incomplete(f.complete)}"
    )

    for size, count, into in (
        (options.payload, options.ingest_count, r.acked),
        (options.large_payload, options.large_count, r.acked_large),
    ):
        figures, cpu = paired_acked(
            endpoint,
            count=count,
            payload_size=size,
            window=options.window,
            segments=options.segments,
            first=order[0],
            timeout=timeout,
            pids=topology.pids,
        )
        into.update(figures)
        if size == options.payload:
            r.cpu_us_per_msg = {
                path: {n: s * 1e6 / max(1, figures[path].stored) for n, s in used.items()}
                for path, used in cpu.items()
            }
        _purge(paths)
        say(f"  acked {size} B window {options.window}: " + _pair(into))

    for path in order:
        r.fire[path] = asyncio.run(
            measure.fire_and_forget(
                endpoint[path],
                paths.direct,
                paths.stream,
                SUBJECT,
                count=options.fire_count,
                payload_size=options.payload,
                timeout=timeout,
            )
        )
        _purge(paths)
    say(f"  fire-and-forget {options.payload} B until stored: " + _pair(r.fire))

    for path in order:
        r.latency[path] = asyncio.run(
            measure.ack_latency(
                endpoint[path],
                SUBJECT,
                count=options.latency_count,
                payload_size=options.payload,
                timeout=timeout,
            )
        )
    _purge(paths)
    d, e = r.latency["direct"], r.latency["edge"]
    say(
        f"  sync acked latency p50/p99 ms: direct {d.p50_ms:.3f}/{d.p99_ms:.3f}, "
        f"edge {e.p50_ms:.3f}/{e.p99_ms:.3f} (hop p99 +{e.p99_ms - d.p99_ms:.3f})"
    )

    _backlog_and_drain(topology, paths, options, r, say)
    return r


def place_leader(paths: Paths, options: BenchOptions, timeout: float) -> str | None:
    """Put the stream leader where ``options`` says (elections put it anywhere)."""
    entry = paths.direct_server
    return asyncio.run(
        measure.place_stream_leader(
            paths.direct,
            paths.stream,
            avoid=None if options.leader_on_entry else entry,
            prefer=entry if options.leader_on_entry else None,
            timeout=timeout,
        )
    )


def paired_acked(
    endpoint: dict[str, Endpoint],
    *,
    count: int,
    payload_size: int,
    window: int,
    segments: int,
    first: str,
    timeout: float,
    pids: dict[str, int] | None = None,
) -> tuple[dict[str, measure.IngestFigures], dict[str, dict[str, float]]]:
    """``count`` acked publishes per path, in ``segments`` slices alternating A B B A ...

    Two back-to-back runs of a second each see different machines (a file-store flush,
    another process's burst); slicing both paths into interleaved segments, in an order
    that cancels a linear drift, makes each round's ratio compare like with like.
    Also returns the CPU seconds each of ``pids`` (and this process) spent per path.
    """
    second = "edge" if first == "direct" else "direct"
    pattern = [first, second, second, first]
    parts: dict[str, list[measure.IngestFigures]] = {first: [], second: []}
    cpu: dict[str, dict[str, float]] = {first: {}, second: {}}
    per_segment = max(1, count // segments)
    for index in range(2 * segments):
        path = pattern[index % 4]
        before = cpu_seconds(pids or {})
        parts[path].append(
            asyncio.run(
                measure.acked_ingest(
                    endpoint[path],
                    SUBJECT,
                    count=per_segment,
                    payload_size=payload_size,
                    window=window,
                    timeout=timeout,
                )
            )
        )
        for name, spent in cpu_seconds(pids or {}).items():
            cpu[path][name] = cpu[path].get(name, 0.0) + spent - before.get(name, spent)
    return {path: measure.combine(figures) for path, figures in parts.items()}, cpu


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each server and of this process (the publisher).

    On a machine whose cores all processes share, a ratio of rates is a ratio of CPU
    per message; this says whose CPU it was (Linux /proc; empty elsewhere).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for name, pid in {**pids, CLIENT: os.getpid()}.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def _backlog_and_drain(
    topology: Topology, paths: Paths, options: BenchOptions, r: Round, say: Say
) -> None:
    """Hub down -> acked backlog on the buffered edge -> hub up -> time the drain."""
    before = asyncio.run(measure.stream_state(paths.direct, paths.stream, timeout=options.timeout))
    topology.stop_hub()
    try:
        r.edge_local = asyncio.run(
            measure.acked_ingest(
                paths.buffered,
                SUBJECT,
                count=options.backlog,
                payload_size=options.payload,
                window=options.window,
                timeout=options.timeout,
            )
        )
    except BaseException:
        topology.start_hub()
        raise
    r.drain, r.hub_restart_seconds = asyncio.run(
        _restart_and_watch(topology, paths, before.last_seq, r.edge_local.stored, options, say)
    )
    _purge(paths)
    local, drain = r.edge_local, r.drain
    say(
        f"  buffered edge, hub down: {local.stored:,} acked locally at "
        f"{local.msgs_per_sec:,.0f} msgs/s; hub restarted in {r.hub_restart_seconds:.1f}s; "
        f"first event after {_seconds(drain.first_progress_seconds)}, all {drain.events:,} "
        f"after {drain.seconds:.2f}s; drain rate {drain.msgs_per_sec:,.0f} msgs/s"
        + _incomplete(drain.complete)
    )


async def _restart_and_watch(
    topology: Topology,
    paths: Paths,
    start_seq: int,
    backlog: int,
    options: BenchOptions,
    say: Say,
) -> tuple[measure.WaitFigures, float]:
    """Start the hub (in a thread: it blocks) while the stream is watched from the start.

    The backlog may start flowing before ``start_hub`` returns (it waits for every
    edge's leafnode too), so the watcher must already be polling.
    """
    since = time.perf_counter()
    watch = asyncio.create_task(
        measure.wait_for_stream(
            paths.direct,
            paths.stream,
            start_seq=start_seq,
            target_seq=start_seq + backlog,
            since=since,
            timeout=options.timeout,
        )
    )
    try:
        await asyncio.to_thread(topology.start_hub)
    except BaseException:
        watch.cancel()
        raise
    restarted = time.perf_counter() - since
    return await watch, restarted


def summarize(rounds: list[Round], options: BenchOptions, paths: Paths) -> dict[str, Any]:
    """Medians over rounds, in the JSON shape of ``--json``."""

    def med(get: Callable[[Round], float]) -> float:
        return _num(median([get(r) for r in rounds]))

    def cpu(r: Round, path: str, names: Sequence[str] | None = None) -> float:
        used = r.cpu_us_per_msg.get(path, {})
        chosen = [v for n, v in used.items() if names is None or n in names]
        return sum(chosen) if chosen else math.nan

    hub = paths.hub_servers

    direct = med(lambda r: r.acked["direct"].msgs_per_sec)
    drain = med(lambda r: _drain(r).msgs_per_sec)
    return {
        "rounds": len(rounds),
        "payloadBytes": options.payload,
        "window": options.window,
        # Item 2, acked, 256 B: the headline figures.
        "directMsgsPerSec": direct,
        "edgeMsgsPerSec": med(lambda r: r.acked["edge"].msgs_per_sec),
        "ratio": med(lambda r: _ratio(r.acked["edge"], r.acked["direct"])),
        "largePayloadBytes": options.large_payload,
        "largeDirectMsgsPerSec": med(lambda r: r.acked_large["direct"].msgs_per_sec),
        "largeEdgeMsgsPerSec": med(lambda r: r.acked_large["edge"].msgs_per_sec),
        "largeDirectMBPerSec": med(lambda r: r.acked_large["direct"].mb_per_sec),
        "largeEdgeMBPerSec": med(lambda r: r.acked_large["edge"].mb_per_sec),
        "largeRatio": med(lambda r: _ratio(r.acked_large["edge"], r.acked_large["direct"])),
        "fireDirectMsgsPerSec": med(lambda r: r.fire["direct"].msgs_per_sec),
        "fireEdgeMsgsPerSec": med(lambda r: r.fire["edge"].msgs_per_sec),
        "fireRatio": med(lambda r: _ratio(r.fire["edge"], r.fire["direct"])),
        # Why the ratio is what it is: CPU per acked 256 B message (all processes share
        # this machine's cores), and the ratio the hub's own CPU alone would allow.
        "cpuUsPerMsgDirect": med(lambda r: cpu(r, "direct")),
        "cpuUsPerMsgEdge": med(lambda r: cpu(r, "edge")),
        "edgeServerUsPerMsg": med(lambda r: cpu(r, "edge", [paths.edge_server])),
        "hubUsPerMsgDirect": med(lambda r: cpu(r, "direct", hub)),
        "hubUsPerMsgEdge": med(lambda r: cpu(r, "edge", hub)),
        "hubCpuRatio": med(lambda r: cpu(r, "direct", hub) / cpu(r, "edge", hub)),
        # Item 3: through the edge unless named direct.
        "p50Ms": med(lambda r: r.latency["edge"].p50_ms),
        "p99Ms": med(lambda r: r.latency["edge"].p99_ms),
        "directP50Ms": med(lambda r: r.latency["direct"].p50_ms),
        "directP99Ms": med(lambda r: r.latency["direct"].p99_ms),
        "hopP50Ms": med(lambda r: r.latency["edge"].p50_ms - r.latency["direct"].p50_ms),
        "hopP99Ms": med(lambda r: r.latency["edge"].p99_ms - r.latency["direct"].p99_ms),
        # Item 4.
        "edgeLocalMsgsPerSec": med(lambda r: _local(r).msgs_per_sec),
        "backlog": options.backlog,
        "drainMsgsPerSec": drain,
        "drainSeconds": med(lambda r: _drain(r).seconds),
        "drainFirstEventSeconds": med(lambda r: _nan(_drain(r).first_progress_seconds)),
        "drainOverallMsgsPerSec": med(lambda r: _drain(r).overall_msgs_per_sec),
        "drainRatio": med(lambda r: _drain(r).msgs_per_sec / r.acked["direct"].msgs_per_sec),
        "hubRestartSeconds": med(lambda r: r.hub_restart_seconds),
        # Item 1.
        "fanoutSubscribers": options.subscribers,
        "fanoutPubMsgsPerSec": med(lambda r: _fan(r).pub_msgs_per_sec),
        "fanoutPubMBPerSec": med(lambda r: _fan(r).pub_mb_per_sec),
        "fanoutSubMsgsPerSec": med(lambda r: _fan(r).sub_msgs_per_sec),
        "fanoutSubMBPerSec": med(lambda r: _fan(r).sub_mb_per_sec),
        "complete": all(_complete(r) for r in rounds),
        "targets": {
            "ratio": TARGET_RATIO,
            "hopP99Ms": TARGET_HOP_P99_MS,
            "drainRatio": TARGET_DRAIN_RATIO,
        },
        "perRound": [_round_json(r) for r in rounds],
    }


def program_eval(options: BenchOptions, say: Say) -> dict[str, Any]:
    """Item 5, or why it was skipped. Imported lazily: local mode runs without Pulumi."""
    if not options.program_eval:
        return {"skipped": "disabled (--no-program-eval)"}
    if importlib.util.find_spec("pulumi") is None:
        note = "Pulumi is not installed (pip install -r requirements.txt to include item 5)"
        say(f"program evaluation skipped: {note}")
        return {"skipped": note}
    from bench import program_eval as evaluation  # lazy: imports Pulumi

    def show(round_no: int, edges: int, seconds: float) -> None:
        say(f"  program round {round_no}: hub stack with {edges} edges {seconds * 1000:.1f} ms")

    say("program evaluation (hub stack under Pulumi mocks)")
    figures = evaluation.measure(options.program_edges, options.rounds, on_round=show)
    return {
        "edges": {str(f.edges): _num(f.median_seconds * 1000) for f in figures},
        "unit": "ms",
        "resources": {str(f.edges): f.resources for f in figures},
        "perRound": {str(f.edges): [_num(s * 1000) for s in f.rounds] for f in figures},
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on (the README table names it)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from sandbox import processes  # local: only needed here

    try:
        version = subprocess.run(
            [str(processes.nats_server_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError, processes.ProcessError) as error:
        version = f"unknown ({error})"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memoryGiB": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "natsServer": version,
        "natsPy": _version("nats-py"),
    }


def describe_settings(topology: Topology, options: BenchOptions) -> dict[str, Any]:
    """The knobs that move the figures, as this run had them."""
    plan = topology.plan
    stream = plan.stream
    edge_conf = plan.configs[plan.edge_server(plan.edges[0]).name]
    hub_conf = plan.configs[plan.hub_servers[0].name]
    remote = (edge_conf.get("leafnodes", {}).get("remotes") or [{}])[-1]
    return {
        "window": options.window,
        "stream": {
            "storage": stream.get("storage"),
            "replicas": stream.get("num_replicas"),
            "duplicateWindowNs": stream.get("duplicate_window"),
        },
        "hubLeafnodeCompression": hub_conf.get("leafnodes", {}).get("compression", "default"),
        "remoteCompression": remote.get("compression", "default"),
        "writeDeadline": hub_conf.get("write_deadline", "default"),
        "hubServers": len(plan.hub_servers),
        "entryServer": choose_paths(topology).direct_server,
        "streamLeader": "on the entry server"
        if options.leader_on_entry
        else "off the entry server",
    }


# ---------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BenchOptions()
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--rounds", type=int, default=None, help=f"rounds (default {defaults.rounds}, >= 3)"
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        help=f"in-flight acks per publisher (default {defaults.window})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts: check that it runs, not figures"
    )
    parser.add_argument(
        "--no-program-eval", action="store_true", help="skip item 5 (Pulumi program timing)"
    )
    parser.add_argument(
        "--stacks-dir", type=Path, default=ROOT / "stacks", help="where Pulumi.<stack>.yaml live"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory of the bench's own topology (default: a temporary one)",
    )


def run(args: argparse.Namespace) -> int:
    options = BenchOptions.quick() if args.quick else BenchOptions()
    chosen = {"rounds": args.rounds, "window": args.window}
    options = replace(
        options,
        **{k: v for k, v in chosen.items() if v is not None},
        program_eval=not args.no_program_eval,
    )
    if options.rounds < MIN_ROUNDS and not args.quick:
        print(
            f"--rounds {options.rounds}: a median needs at least {MIN_ROUNDS} rounds "
            "(use --quick for a check that it runs)",
            file=sys.stderr,
        )
        return 2
    if options.window < 1:
        print(
            f"--window {options.window}: at least 1 ack must be allowed in flight", file=sys.stderr
        )
        return 2
    # With --json, stdout carries the object alone; the rounds still show, on stderr.
    say: Say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    result = run_bench(options, stacks_dir=args.stacks_dir, state_dir=args.state_dir, say=say)
    if args.json:
        print(json.dumps(result))
    else:
        print()
        print(results_table(result))
    return 0


def register(subparsers: Any) -> None:
    """Add ``bench`` to the sandbox CLI (``sandbox/cli.py`` calls ``run(args, console)``)."""
    parser = subparsers.add_parser(
        "bench",
        help="measure edge -> hub ingest, latency and backlog drain against direct",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=lambda args, _console: run(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


# ---------------------------------------------------------------------------- table


def results_table(result: dict[str, Any]) -> str:
    """The medians as a markdown table (what ``bench/run_bench.py`` puts in the README)."""
    r = result
    rows: list[tuple[str, str, str, str]] = []

    def add(what: str, direct: str, edge: str, ratio: str) -> None:
        rows.append((what, direct, edge, ratio))

    add(
        f"Runbook bench, 1 pub / {r['fanoutSubscribers']} sub, {r['payloadBytes']} B "
        "(hub, msgs/s · MB/s)",
        f"pub {_n(r['fanoutPubMsgsPerSec'])} · {_f(r['fanoutPubMBPerSec'])}",
        f"sub {_n(r['fanoutSubMsgsPerSec'])} · {_f(r['fanoutSubMBPerSec'])}",
        "",
    )
    add(
        f"Acked ingest {r['payloadBytes']} B, window {r['window']} (msgs/s)",
        _n(r["directMsgsPerSec"]),
        _n(r["edgeMsgsPerSec"]),
        f"**{_x(r['ratio'])}** (target ≥ {_x(r['targets']['ratio'])})",
    )
    add(
        f"CPU per acked {r['payloadBytes']} B message, µs: all processes · hub servers only",
        f"{_f(r['cpuUsPerMsgDirect'])} · {_f(r['hubUsPerMsgDirect'])}",
        f"{_f(r['cpuUsPerMsgEdge'])} · {_f(r['hubUsPerMsgEdge'])} "
        f"(edge server {_f(r['edgeServerUsPerMsg'])})",
        f"hub CPU alone would allow {_x(r['hubCpuRatio'])}",
    )
    add(
        f"Acked ingest {r['largePayloadBytes']} B, window {r['window']} (msgs/s · MB/s)",
        f"{_n(r['largeDirectMsgsPerSec'])} · {_f(r['largeDirectMBPerSec'])}",
        f"{_n(r['largeEdgeMsgsPerSec'])} · {_f(r['largeEdgeMBPerSec'])}",
        _x(r["largeRatio"]),
    )
    add(
        f"Fire-and-forget {r['payloadBytes']} B, until stored (msgs/s)",
        _n(r["fireDirectMsgsPerSec"]),
        _n(r["fireEdgeMsgsPerSec"]),
        _x(r["fireRatio"]),
    )
    add(
        "Sync acked publish p50 / p99 (ms)",
        f"{_f(r['directP50Ms'], 3)} / {_f(r['directP99Ms'], 3)}",
        f"{_f(r['p50Ms'], 3)} / {_f(r['p99Ms'], 3)}",
        f"hop p99 **+{_f(r['hopP99Ms'], 3)} ms** (target < {r['targets']['hopP99Ms']} ms)",
    )
    add(
        "Buffered edge, hub down: local acked publish (msgs/s)",
        "",
        _n(r["edgeLocalMsgsPerSec"]),
        "",
    )
    add(
        f"Backlog drain, {_n(r['backlog'])} events, once the hub is started again",
        f"direct ingest {_n(r['directMsgsPerSec'])} msgs/s",
        f"{_n(r['drainMsgsPerSec'])} msgs/s; first event at "
        f"{_f(r['drainFirstEventSeconds'], 2)} s, all at {_f(r['drainSeconds'], 2)} s",
        f"**{_x(r['drainRatio'])}** (target ≥ {_x(r['targets']['drainRatio'])})",
    )
    evaluation = result.get("programEval") or {}
    if "edges" in evaluation:
        cells = ", ".join(f"{n} edges {_f(ms, 1)}" for n, ms in evaluation["edges"].items())
        add("Hub stack evaluation under Pulumi mocks (ms)", cells, "", "")
    else:
        add("Hub stack evaluation under Pulumi mocks", evaluation.get("skipped", "skipped"), "", "")
    lines = [
        "| Measurement (median of rounds) | Direct (hub) | Through the edge | Edge / direct |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers


def _purge(paths: Paths) -> None:
    asyncio.run(measure.purge_stream(paths.direct, paths.stream))


def _endpoint(topology: Topology, server: ServerPlan, label: str) -> Endpoint:
    target = topology.target(server.name, "app")
    return Endpoint(target.servers[0], target.user, target.password, label=label)


def _ratio(edge: measure.IngestFigures, direct: measure.IngestFigures) -> float:
    return edge.msgs_per_sec / direct.msgs_per_sec if direct.msgs_per_sec else math.nan


def _drain(r: Round) -> measure.WaitFigures:
    assert r.drain is not None
    return r.drain


def _local(r: Round) -> measure.IngestFigures:
    assert r.edge_local is not None
    return r.edge_local


def _fan(r: Round) -> measure.FanoutFigures:
    assert r.fanout is not None
    return r.fanout


def _complete(r: Round) -> bool:
    figures: list[Any] = [
        r.fanout,
        *r.acked.values(),
        *r.acked_large.values(),
        *r.fire.values(),
        *r.latency.values(),
        r.edge_local,
        r.drain,
    ]
    return all(f is not None and f.complete for f in figures)


def _round_json(r: Round) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return _clean(asdict(value)) if value is not None else None

    return {
        "round": r.index,
        "fanout": plain(r.fanout),
        "acked": {k: plain(v) for k, v in r.acked.items()},
        "ackedLarge": {k: plain(v) for k, v in r.acked_large.items()},
        "fireAndForget": {k: plain(v) for k, v in r.fire.items()},
        "latency": {k: plain(v) for k, v in r.latency.items()},
        "edgeLocal": plain(r.edge_local),
        "drain": plain(r.drain),
        "hubRestartSeconds": _num(r.hub_restart_seconds),
        "streamLeader": r.leader,
        "cpuUsPerMsg": _clean(r.cpu_us_per_msg),
    }


def _clean(value: Any) -> Any:
    """NaN is not JSON: a figure that could not be measured is null."""
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _num(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, 4)


def _pair(figures: dict[str, measure.IngestFigures]) -> str:
    d, e = figures["direct"], figures["edge"]
    ratio = e.msgs_per_sec / d.msgs_per_sec if d.msgs_per_sec else math.nan
    flags = _incomplete(d.complete and e.complete)
    errors = f" errors {d.errors}/{e.errors}" if d.errors or e.errors else ""
    return (
        f"direct {d.msgs_per_sec:,.0f} msgs/s, edge {e.msgs_per_sec:,.0f} msgs/s, "
        f"ratio {ratio:.2f}{errors}{flags}"
    )


def _incomplete(complete: bool) -> str:
    return "" if complete else " (INCOMPLETE: deadline reached, see JSON)"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(distribution: str) -> str:
    from importlib import metadata  # local: only the machine description needs it

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
