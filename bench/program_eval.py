"""Item 5 of the benchmark: how long the hub stack takes to evaluate as its edge list grows.

Runs the real ``__main__.py`` under Pulumi mocks (``tests/pulumi_harness.py``: fresh
loop and mocks per run) with the hub stack file's config and ``ops-nats:hub.edges`` set
to N generated names, round by round (1, 10, 50, 1, 10, 50, ...) so that a noisy
moment hits every size alike. One unrecorded warm-up run first pays for the imports.

Needs Pulumi (``requirements.txt``); ``sandbox/bench.py`` imports this module only when
Pulumi is installed.

    python -m bench.program_eval [--edges 1 10 50] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EDGES = (1, 10, 50)
EDGES_KEY = "ops-nats:hub.edges"


@dataclass(frozen=True)
class EvalFigures:
    """Seconds to evaluate the hub stack with ``edges`` edges listed, per round."""

    edges: int
    resources: int  # resources the run declared (grows if edges add resources)
    rounds: list[float]
    median_seconds: float


def edge_names(count: int) -> list[str]:
    """DNS-safe, unique names as an operator would list them."""
    return [f"edge-{index:03d}" for index in range(1, count + 1)]


def hub_config(edges: int) -> dict[str, Any]:
    """The hub stack file's config with ``edges`` plain edges listed."""
    from tests.pulumi_harness import stack_config  # lazy: needs ROOT on sys.path

    config = stack_config("hub")
    hub = dict(config.get("ops-nats:hub") or {})
    hub["edges"] = edge_names(edges)
    config["ops-nats:hub"] = hub
    return config


def evaluate(edges: int) -> tuple[float, int]:
    """One run of the hub program with ``edges`` edges: (seconds, resources declared)."""
    from tests.pulumi_harness import run_program  # lazy: imports Pulumi

    config = hub_config(edges)
    start = time.perf_counter()
    run = run_program("hub", config)
    return time.perf_counter() - start, len(run.resources)


def measure(
    sizes: Sequence[int] = DEFAULT_EDGES,
    rounds: int = 3,
    *,
    on_round: Callable[[int, int, float], None] | None = None,
) -> list[EvalFigures]:
    """Interleaved rounds over ``sizes``; ``on_round(round, edges, seconds)`` prints them."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    evaluate(min(sizes))  # warm-up: module imports and Pulumi's first-run setup
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    resources: dict[int, int] = {}
    for round_no in range(1, rounds + 1):
        for size in sizes:
            elapsed, declared = evaluate(size)
            seconds[size].append(elapsed)
            resources[size] = declared
            if on_round is not None:
                on_round(round_no, size, elapsed)
    return [
        EvalFigures(
            edges=size,
            resources=resources[size],
            rounds=seconds[size],
            median_seconds=statistics.median(seconds[size]),
        )
        for size in sizes
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.program_eval", description=__doc__)
    parser.add_argument("--edges", type=int, nargs="+", default=list(DEFAULT_EDGES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    def show(round_no: int, edges: int, elapsed: float) -> None:
        if not args.json:
            print(f"round {round_no}: {edges:>3} edges  {elapsed * 1000:8.1f} ms")

    figures = measure(args.edges, args.rounds, on_round=show)
    if args.json:
        print(json.dumps({"programEval": [asdict(f) for f in figures]}))
    else:
        for f in figures:
            print(
                f"median: {f.edges:>3} edges  {f.median_seconds * 1000:8.1f} ms "
                f"({f.resources} resources)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
