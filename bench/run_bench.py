"""Run ``python -m sandbox bench`` once and put its results table into README.md.

The table goes between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` with the
machine it ran on, followed by ``bench/findings.md`` (which setting moved which figure,
written by hand from ``python -m bench.experiments``). Nothing else in the README is
touched; without the markers the block is printed instead. The run's full JSON (every
round) is kept in ``bench/results.json``.

    python bench/run_bench.py [--rounds N] [--readme README.md] [--no-write]
    python bench/run_bench.py --from-json bench/results.json   # re-render, no new run
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandbox import bench  # noqa: E402 (needs ROOT on sys.path first)

START = "<!-- bench:start -->"
END = "<!-- bench:end -->"
FINDINGS = Path(__file__).resolve().parent / "findings.md"
RESULTS = Path(__file__).resolve().parent / "results.json"


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['nproc']} cores, {machine['cpu']}, {machine['memoryGiB']} GiB, {machine['os']}; "
        f"Python {machine['python']}, {machine['natsServer']}, nats-py {machine['natsPy']}"
    )


def render_block(result: dict[str, Any], findings: str = "") -> str:
    """The README block: how it was made, on what, the table, then the findings."""
    settings = result.get("settings", {})
    stream = settings.get("stream", {})
    lines = [
        START,
        f"One run of `python bench/run_bench.py` (= `python -m sandbox bench`): "
        f"{result['rounds']} interleaved rounds, medians; the whole run took "
        f"{result['seconds']:.0f} s.",
        "",
        f"Machine: {machine_line(result['machine'])}.",
        "",
        f"Topology: the example stack files booted locally — hub of "
        f"{settings.get('hubServers', 3)} servers, stream `ops` {stream.get('storage')} "
        f"R{stream.get('replicas')}, edge-a buffered, edge-b plain; publisher window "
        f"{result['window']} acks; all servers, and the Python client, share the "
        "machine's cores.",
        "",
        bench.results_table(result),
        "",
        "Every round's figures: `bench/results.json`. Ratios are medians of per-round "
        "ratios. Drain: the rate counts from the last poll of the hub stream that saw no "
        "backlog event yet to the last event; the seconds count from starting the hub "
        f"servers again (the cluster is back after {_f(result.get('hubRestartSeconds'))} s, "
        f"the first event lands after {_f(result.get('drainFirstEventSeconds'))} s). "
        "Runbook bench: publisher and subscribers are one Python process, so its figures "
        "are the client's limit, not the server's.",
    ]
    if findings.strip():
        lines += ["", findings.strip()]
    lines.append(END)
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str | None:
    """``text`` with the marked block replaced; None when the markers are not there."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        return None
    return pattern.sub(lambda _match: block, text, count=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/run_bench.py", description=__doc__)
    parser.add_argument("--rounds", type=int, default=bench.BenchOptions().rounds)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-write", action="store_true", help="print the block only")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="re-render the block from a saved run (e.g. bench/results.json), no new run",
    )
    args = parser.parse_args(argv)
    if args.rounds < bench.MIN_ROUNDS:
        parser.error(f"--rounds must be at least {bench.MIN_ROUNDS} (the table shows medians)")
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
    else:
        result = bench.run_bench(replace(bench.BenchOptions(), rounds=args.rounds))
    findings = FINDINGS.read_text() if FINDINGS.is_file() else ""
    block = render_block(result, findings)
    print()
    print(block)
    if args.no_write:
        return 0
    if args.from_json is None:
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    readme = args.readme.read_text() if args.readme.is_file() else ""
    updated = replace_block(readme, block)
    if updated is None:
        print(
            f"\n{args.readme} has no {START} ... {END} markers: the block above was not "
            "written; add the markers where the table belongs and run again.",
            file=sys.stderr,
        )
        return 1
    args.readme.write_text(updated)
    kept = "" if args.from_json else f" and every round into {RESULTS}"
    print(f"\nwrote the table into {args.readme}{kept}")
    return 0


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
