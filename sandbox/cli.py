"""``python -m sandbox <command>``: the stack files as local NATS servers.

    up [--stacks hub,edge-a]   boot the hub cluster and the edges, declare the stream
    status [--json]            every server: pid, client URL, leaf connections, health
    verify [--json]            the runbook's daily checks (exit 1 naming what is broken)
    logs SERVER [--lines N]    a server's log
    credentials [--stack S]    the generated passwords (only when asked)
    down [--purge]             stop every process ``up`` started, by pid
    demo                       up, verify, a summary, down
    bench [--json]             edge -> hub ingest, latency, drain vs. direct (own topology)
    outage [--events N]        hub down, publish on buffered edges, count (exit 1 on loss)

Exit codes: 0 fine; 1 verify found a problem (or status shows a server not running);
2 bad input, nothing up, or the topology did not boot (everything started is stopped).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from components.jetstream import JetStreamError
from sandbox import arguments, bench, outage, output, processes
from sandbox import state as state_store
from sandbox.server_config import UnsupportedValues
from sandbox.stacks import StackError, load_stacks
from sandbox.topology import DEFAULT_TIMEOUT, BootError, NotUp, Topology
from sandbox.verify import verify

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STACKS_DIR = REPO_ROOT / "stacks"

# Errors whose message already tells the operator what to do.
_OPERATOR_ERRORS = (
    StackError,
    BootError,
    NotUp,
    processes.ProcessError,
    state_store.StateError,
    JetStreamError,
    UnsupportedValues,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Piped output (CI logs, `| less`) gets room for the tables instead of 80 columns.
    width = None if sys.stdout.isatty() else 120
    console = Console(width=width, log_path=False)
    errors = Console(stderr=True, width=width)
    command: Callable[[argparse.Namespace, Console], int] = args.run
    try:
        return command(args, console)
    except _OPERATOR_ERRORS as error:
        errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted; anything `up` had started is stopped")
        return 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=state_store.default_state_dir(),
        help="where passwords (0600), configs, logs and pids are kept (default: .sandbox/)",
    )
    boot = argparse.ArgumentParser(add_help=False)
    boot.add_argument(
        "--stacks",
        type=arguments.stack_list,
        default=None,
        help="comma-separated stack names, one hub and any edges (default: every stack file)",
    )
    boot.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS_DIR)
    boot.add_argument(
        "--base-port",
        type=arguments.port,
        default=None,
        help="assign ports upwards from here (default: free ports picked at run time)",
    )
    boot.add_argument(
        "--timeout",
        type=arguments.seconds,
        default=DEFAULT_TIMEOUT,
        help=f"bound of each wait in seconds (default {DEFAULT_TIMEOUT:.0f})",
    )
    checks = argparse.ArgumentParser(add_help=False)
    checks.add_argument(
        "--count", type=arguments.positive, default=3, help="events per edge (default 3)"
    )
    checks.add_argument(
        "--verify-timeout",
        type=arguments.seconds,
        default=30.0,
        help="how long events may take to arrive, in seconds (default 30)",
    )

    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run the hub and edges of the stack files as local nats-server processes.",
    )
    sub = parser.add_subparsers(required=True, metavar="command")
    up = sub.add_parser("up", parents=[common, boot], help="boot the hub and edges")
    up.add_argument("--json", action="store_true", help="print the servers as JSON")
    up.set_defaults(run=cmd_up)
    status = sub.add_parser("status", parents=[common], help="show every server")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)
    check = sub.add_parser("verify", parents=[common, checks], help="the daily checks")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_verify)
    logs = sub.add_parser("logs", parents=[common], help="a server's log")
    logs.add_argument("server", help="server name, e.g. nats-0 or edge-a-nats-0")
    logs.add_argument("--lines", type=arguments.positive, default=50)
    logs.set_defaults(run=cmd_logs)
    creds = sub.add_parser("credentials", parents=[common], help="print generated passwords")
    creds.add_argument("--stack", default=None, help="only this stack")
    creds.set_defaults(run=cmd_credentials)
    down = sub.add_parser("down", parents=[common], help="stop every server up started")
    down.add_argument("--purge", action="store_true", help="also forget passwords and data")
    down.set_defaults(run=cmd_down)
    demo = sub.add_parser("demo", parents=[common, boot, checks], help="up, verify, down")
    demo.set_defaults(run=cmd_demo)
    bench.register(sub)
    outage.register(sub)
    return parser


def cmd_up(args: argparse.Namespace, console: Console) -> int:
    topology = _boot(args, console, quiet=args.json)
    rows = topology.status()
    if args.json:
        print(json.dumps({"servers": [r.to_json() for r in rows]}, indent=2, sort_keys=True))
        return 0
    console.print(output.servers_table(rows))
    output.credentials_note(console, topology)
    console.print("Next: [bold]python -m sandbox verify[/], then [bold]python -m sandbox down[/].")
    return 0


def cmd_status(args: argparse.Namespace, console: Console) -> int:
    topology = Topology.attach(args.state_dir)
    rows = topology.status()
    if args.json:
        print(json.dumps({"servers": [r.to_json() for r in rows]}, indent=2, sort_keys=True))
    else:
        console.print(output.servers_table(rows))
    return 0 if all(r.state == "running" for r in rows) else 1


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    topology = Topology.attach(args.state_dir)
    if args.json:
        report = verify(topology, count=args.count, timeout=args.verify_timeout)
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        with console.status("verifying: publishing on every edge, counting on the hub"):
            report = verify(topology, count=args.count, timeout=args.verify_timeout)
        output.verify_report(console, report)
    return 0 if report.ok else 1


def cmd_logs(args: argparse.Namespace, console: Console) -> int:
    topology = Topology.attach(args.state_dir)
    try:
        server = topology.plan.server(args.server)
    except KeyError as error:
        raise NotUp(f"{error.args[0]}; see `python -m sandbox status`") from None
    text = processes.tail(server.log_path, args.lines)
    console.print(f"[dim]== {server.log_path} (last {args.lines} lines)[/]", highlight=False)
    print(text)
    return 0


def cmd_credentials(args: argparse.Namespace, console: Console) -> int:
    topology = Topology.attach(args.state_dir)
    stacks = list(dict.fromkeys(s.stack for s in topology.plan.servers))
    if args.stack:
        if args.stack not in stacks:
            raise NotUp(f"no stack {args.stack!r} in this sandbox (stacks: {', '.join(stacks)})")
        stacks = [args.stack]
    for stack in stacks:
        console.print(f"# {stack} ({topology.credentials_file(stack)})", highlight=False)
        for env, password in sorted(topology.passwords(stack).items()):
            print(f"{env}={password}")
    return 0


def cmd_down(args: argparse.Namespace, console: Console) -> int:
    try:
        topology = Topology.attach(args.state_dir)
    except NotUp:
        stopped: list[str] = []
    else:
        stopped = topology.down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    if args.purge:
        state_store.purge(args.state_dir)
        console.print(f"removed passwords, configs, logs and data under {args.state_dir}")
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    topology = _boot(args, console, quiet=False)
    try:
        console.print(output.servers_table(topology.status()))
        with console.status("verifying: publishing on every edge, counting on the hub"):
            report = verify(topology, count=args.count, timeout=args.verify_timeout)
        output.verify_report(console, report)
        _summary(console, topology, report.ok)
    finally:
        stopped = topology.down()
        console.print(f"down: stopped {len(stopped)} servers ({', '.join(stopped)})")
    return 0 if report.ok else 1


def _boot(args: argparse.Namespace, console: Console, *, quiet: bool) -> Topology:
    stacks = load_stacks(args.stacks_dir, args.stacks)
    if quiet:
        return Topology.boot(stacks, args.state_dir, base_port=args.base_port, timeout=args.timeout)
    with console.status("booting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message, highlight=False)

        return Topology.boot(
            stacks,
            args.state_dir,
            base_port=args.base_port,
            timeout=args.timeout,
            progress=progress,
        )


def _summary(console: Console, topology: Topology, ok: bool) -> None:
    plan = topology.plan
    hub = ", ".join(s.name for s in plan.hub_servers)
    edges = ", ".join(f"{e} ({'buffered' if e in plan.buffers else 'plain'})" for e in plan.edges)
    console.print()
    console.print("[bold]Summary[/]")
    console.print(f"  hub cluster: {hub} (JetStream domain {plan.hub_domain})")
    console.print(f"  edges: {edges or 'none'}")
    console.print(
        f"  stream {plan.stream['name']} on {', '.join(plan.stream['subjects'])}: "
        + ("every edge's events stored exactly once" if ok else "NOT every event arrived")
    )
    console.print(
        "  configs from the same chart values `pulumi up` deploys; "
        "passwords only in the environment, never in nats.conf"
    )


if __name__ == "__main__":
    sys.exit(main())
