"""Which setting moves which figure: the benchmark's core items under config variants.

Each variant boots the local topology from the stack files with one change (a leafnode
compression mode, a write deadline, stream storage/replicas) applied to the rendered
server configs or the stack settings, then runs interleaved rounds of acked ingest
(direct vs. plain edge, for every publisher window asked for), synchronous latency and,
with ``--drain``, the buffered edge's backlog drain. It also reads every process's CPU
time around the acked runs, which is what explains a ratio on a 2-core machine.

    python -m bench.experiments [--variants baseline compression-off ...] [--windows 64 256]
        [--rounds 5] [--drain] [--json]

The README's "Benchmarks" section quotes its output; the winning settings are the
program's defaults (components/chart_values.py), so ``baseline`` is what ships.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox import bench, measure  # noqa: E402 (needs ROOT on sys.path first)
from sandbox.plan import mirror_renderer  # noqa: E402
from sandbox.stacks import Stack, StackSet, load_stacks  # noqa: E402
from sandbox.topology import Topology  # noqa: E402

ConfPatch = Callable[[Stack, dict[str, Any]], None]


@dataclass(frozen=True)
class Variant:
    """One change against what the stack files and value builders produce."""

    name: str
    what: str
    conf: ConfPatch | None = None  # edits a server's rendered nats.conf dict in place
    stream: dict[str, Any] | None = None  # ops-nats:stream settings to override
    env: dict[str, str] | None = None  # extra environment of every nats-server
    options: dict[str, Any] | None = None  # BenchOptions fields to change


def _leaf_compression(mode: str) -> ConfPatch:
    def patch(stack: Stack, conf: dict[str, Any]) -> None:
        leafnodes = conf.get("leafnodes", {})
        if stack.settings.role == "hub":
            leafnodes["compression"] = mode  # what the hub accepts / proposes
        for remote in leafnodes.get("remotes", []):
            remote["compression"] = mode  # what the edge asks for

    return patch


def _write_deadline(value: str) -> ConfPatch:
    def patch(_stack: Stack, conf: dict[str, Any]) -> None:
        conf["write_deadline"] = value

    return patch


VARIANTS = {
    v.name: v
    for v in (
        Variant("baseline", "the configuration the program renders (no change)"),
        Variant(
            "compression-off",
            "leafnodes.compression: off (hub) and remotes[].compression: off (edges)",
            conf=_leaf_compression("off"),
        ),
        Variant(
            "compression-s2_auto",
            "compression: s2_auto on both sides (2.10's leafnode default, made explicit)",
            conf=_leaf_compression("s2_auto"),
        ),
        Variant(
            "compression-s2_fast",
            "compression: s2_fast on both sides (always compress)",
            conf=_leaf_compression("s2_fast"),
        ),
        Variant("write-deadline-2s", "write_deadline: 2s", conf=_write_deadline("2s")),
        Variant("write-deadline-30s", "write_deadline: 30s", conf=_write_deadline("30s")),
        Variant("stream-r1", "stream replicas 1 (file)", stream={"replicas": 1}),
        Variant(
            "leader-on-entry",
            "stream leader on the hub server both paths enter by (no route hop)",
            options={"leader_on_entry": True},
        ),
        Variant(
            "gomaxprocs-1",
            "GOMAXPROCS=1 in every server's environment (Go runtime threads)",
            env={"GOMAXPROCS": "1"},
        ),
        Variant(
            "gogc-200",
            "GOGC=200 in every server's environment",
            env={"GOGC": "200"},
        ),
        Variant(
            "gogc-400",
            "GOGC=400 in every server's environment (fewer garbage collections)",
            env={"GOGC": "400"},
        ),
        Variant("stream-memory", "stream storage memory (R3)", stream={"storage": "memory"}),
    )
}


def variant_stacks(stacks: StackSet, variant: Variant) -> StackSet:
    if not variant.stream:
        return stacks
    settings = stacks.hub.settings
    stream = settings.stream.model_copy(update=variant.stream)
    hub = replace(stacks.hub, settings=settings.model_copy(update={"stream": stream}))
    return replace(stacks, hub=hub)


def variant_renderer(variant: Variant) -> Callable[[Stack, dict[str, Any]], dict[str, Any]]:
    def render(stack: Stack, values: dict[str, Any]) -> dict[str, Any]:
        conf = copy.deepcopy(mirror_renderer(stack, values))
        if variant.conf is not None:
            variant.conf(stack, conf)
        return conf

    return render


def run_variant(
    variant: Variant,
    stacks: StackSet,
    windows: Sequence[int],
    rounds: int,
    options: bench.BenchOptions,
    *,
    drain: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    saved = {k: os.environ.get(k) for k in variant.env or {}}
    # Servers inherit our environment (sandbox.processes.start_server), restarts too.
    os.environ.update(variant.env or {})
    try:
        with tempfile.TemporaryDirectory(prefix="ops-bench-exp-") as state_dir:
            return _boot_and_measure(
                variant, stacks, Path(state_dir), windows, rounds, options, drain=drain, say=say
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _boot_and_measure(
    variant: Variant,
    stacks: StackSet,
    state_dir: Path,
    windows: Sequence[int],
    rounds: int,
    options: bench.BenchOptions,
    *,
    drain: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    options = replace(options, **(variant.options or {}))
    topology = Topology.boot(
        variant_stacks(stacks, variant),
        state_dir,
        render=variant_renderer(variant),
        timeout=bench.SETTLE_TIMEOUT,
    )
    try:
        return _measure(topology, variant, windows, rounds, options, drain=drain, say=say)
    finally:
        topology.down()


def _measure(
    topology: Topology,
    variant: Variant,
    windows: Sequence[int],
    rounds: int,
    options: bench.BenchOptions,
    *,
    drain: bool,
    say: Callable[[str], None],
) -> dict[str, Any]:
    paths = bench.choose_paths(topology)
    endpoint = {"direct": paths.direct, "edge": paths.edge}
    acked: dict[int, dict[str, list[float]]] = {w: {"direct": [], "edge": []} for w in windows}
    ratios: dict[int, list[float]] = {w: [] for w in windows}
    cpu: dict[int, dict[str, dict[str, list[float]]]] = {
        w: {"direct": {}, "edge": {}} for w in windows
    }
    latency: dict[str, list[float]] = {
        "directP50": [],
        "directP99": [],
        "edgeP50": [],
        "edgeP99": [],
    }
    drains: list[float] = []
    leaders: list[str | None] = []
    for index in range(1, rounds + 1):
        order = ("direct", "edge") if index % 2 else ("edge", "direct")
        leaders.append(bench.place_leader(paths, options, options.timeout))
        for window in windows:
            rate: dict[str, float] = {}
            second = "edge" if order[0] == "direct" else "direct"
            pattern = [order[0], second, second, order[0]]
            parts: dict[str, list[measure.IngestFigures]] = {"direct": [], "edge": []}
            used: dict[str, dict[str, float]] = {"direct": {}, "edge": {}}
            for segment in range(2 * options.segments):
                path = pattern[segment % 4]
                before = bench.cpu_seconds(topology.pids)
                parts[path].append(
                    bench._run(
                        measure.acked_ingest(
                            endpoint[path],
                            bench.SUBJECT,
                            count=options.ingest_count // options.segments,
                            payload_size=options.payload,
                            window=window,
                            timeout=options.timeout,
                        )
                    )
                )
                after = bench.cpu_seconds(topology.pids)
                for name in after:
                    spent = after[name] - before.get(name, after[name])
                    used[path][name] = used[path].get(name, 0.0) + spent
            bench._purge(paths)
            for path in ("direct", "edge"):
                figures = measure.combine(parts[path])
                rate[path] = figures.msgs_per_sec
                acked[window][path].append(figures.msgs_per_sec)
                per_10k = 10_000 / max(1, figures.stored)
                for name, spent in used[path].items():
                    cpu[window][path].setdefault(name, []).append(spent * per_10k)
            ratios[window].append(rate["edge"] / rate["direct"])
            say(
                f"[{variant.name}] round {index} window {window}: direct {rate['direct']:,.0f} "
                f"edge {rate['edge']:,.0f} ratio {rate['edge'] / rate['direct']:.2f}"
            )
        lat = {}
        for path in order:
            lat[path] = bench._run(
                measure.ack_latency(
                    endpoint[path],
                    bench.SUBJECT,
                    count=options.latency_count,
                    payload_size=options.payload,
                    timeout=options.timeout,
                )
            )
        bench._purge(paths)
        latency["directP50"].append(lat["direct"].p50_ms)
        latency["directP99"].append(lat["direct"].p99_ms)
        latency["edgeP50"].append(lat["edge"].p50_ms)
        latency["edgeP99"].append(lat["edge"].p99_ms)
        say(
            f"[{variant.name}] round {index} latency p50/p99 direct "
            f"{lat['direct'].p50_ms:.3f}/{lat['direct'].p99_ms:.3f} edge "
            f"{lat['edge'].p50_ms:.3f}/{lat['edge'].p99_ms:.3f}"
        )
        if drain:
            r = bench.Round(index)
            bench._backlog_and_drain(topology, paths, options, r, say)
            assert r.drain is not None
            drains.append(r.drain.msgs_per_sec)
    return {
        "variant": variant.name,
        "what": variant.what,
        "acked": {
            str(w): {
                "directMsgsPerSec": statistics.median(acked[w]["direct"]),
                "edgeMsgsPerSec": statistics.median(acked[w]["edge"]),
                "ratio": statistics.median(ratios[w]),
                "ratios": [round(x, 3) for x in ratios[w]],
                "cpuSecondsPer10k": {
                    path: {n: round(statistics.median(v), 3) for n, v in cpu[w][path].items()}
                    for path in ("direct", "edge")
                },
            }
            for w in windows
        },
        "latency": {k: statistics.median(v) for k, v in latency.items()},
        "hopP99Ms": statistics.median(
            [e - d for e, d in zip(latency["edgeP99"], latency["directP99"], strict=True)]
        ),
        "drainMsgsPerSec": statistics.median(drains) if drains else None,
        "streamLeaders": leaders,
        "entryServer": paths.direct_server,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments", description=__doc__)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--windows", type=int, nargs="+", default=[256])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=bench.BenchOptions().ingest_count)
    parser.add_argument("--drain", action="store_true", help="also the 100k backlog drain")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stacks-dir", type=Path, default=ROOT / "stacks")
    args = parser.parse_args(argv)
    options = replace(bench.BenchOptions(), ingest_count=args.count)
    stacks = load_stacks(args.stacks_dir)

    def say(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    results = [
        run_variant(
            VARIANTS[name], stacks, args.windows, args.rounds, options, drain=args.drain, say=say
        )
        for name in args.variants
    ]
    if args.json:
        print(json.dumps(results))
        return 0
    print(
        "\n| Variant | Window | Direct msgs/s | Edge msgs/s | Ratio | Hop p99 ms | Drain msgs/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for result in results:
        for window, a in result["acked"].items():
            drained = result["drainMsgsPerSec"]
            print(
                f"| {result['variant']} | {window} | {a['directMsgsPerSec']:,.0f} | "
                f"{a['edgeMsgsPerSec']:,.0f} | {a['ratio']:.2f} | {result['hopP99Ms']:.3f} | "
                f"{'-' if drained is None else f'{drained:,.0f}'} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
