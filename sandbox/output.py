"""Terminal output of the CLI (rich tables); ``--json`` output is built elsewhere as data."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from sandbox.topology import ServerStatus, Topology
from sandbox.verify import VerifyReport

_STATE_STYLE = {"running": "green", "unhealthy": "yellow", "stopped": "red"}


def servers_table(rows: list[ServerStatus]) -> Table:
    table = Table(title="NATS servers (127.0.0.1)", title_justify="left")
    for column in ("server", "role", "stack", "client URL", "pid", "leafs", "state"):
        table.add_column(column)
    for row in rows:
        style = _STATE_STYLE.get(row.state, "")
        state = f"[{style}]{row.state}[/]" + (f" ({row.detail})" if row.detail else "")
        table.add_row(
            row.name,
            row.role,
            row.stack,
            row.client_url,
            str(row.pid or "-"),
            "-" if row.leafnodes is None else str(row.leafnodes),
            state,
        )
    return table


def credentials_note(console: Console, topology: Topology) -> None:
    stacks = list(dict.fromkeys(s.stack for s in topology.plan.servers))
    folder = _short(topology.credentials_file(stacks[0]).parent)
    console.print(
        f"Passwords: {folder}/<stack>.json (mode 0600), never printed; "
        "show them with [bold]python -m sandbox credentials[/]."
    )


def verify_report(console: Console, report: VerifyReport) -> None:
    checks = Table(title="Checks", title_justify="left")
    checks.add_column("")
    checks.add_column("check")
    checks.add_column("detail")
    for check in report.checks:
        mark = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        checks.add_row(mark, check.name, check.detail)
    console.print(checks)

    if report.events:
        table = Table(title="Events published on each edge (app user)", title_justify="left")
        for column in ("edge", "subject", "sent", "acked by", "stored once", "missing", "dupes"):
            table.add_column(column)
        table.add_column("live on hub sub")
        for e in report.events:
            table.add_row(
                e.edge,
                e.subject,
                str(e.published),
                e.acked_by or "-",
                str(e.stored_once),
                str(e.missing),
                str(e.duplicated),
                f"{e.live_seen}" + (" (buffered: via source)" if e.buffered else ""),
            )
        console.print(table)

    if report.stream:
        stream = report.stream
        console.print(
            f"[bold]stream info {stream['name']}[/]: subjects {', '.join(stream['subjects'])}, "
            f"{stream['storage']} R{stream['replicas']} (leader {stream['leader'] or '-'}), "
            f"{stream['messages']} messages, {stream['bytes']} bytes, "
            f"seq {stream['first_seq']}..{stream['last_seq']}"
        )
        for source in stream["sources"]:
            error = f", error {source['error']}" if source["error"] else ""
            console.print(f"  source {source['api']}: lag {source['lag']}{error}")
        subjects = Table(title=f"stream subjects {stream['name']}", title_justify="left")
        subjects.add_column("subject")
        subjects.add_column("messages", justify="right")
        for subject, count in stream["subject_counts"].items():
            subjects.add_row(subject, str(count))
        console.print(subjects)

    if report.servers:
        table = Table(title="server report jetstream (system account)", title_justify="left")
        columns = ("server", "cluster", "domain", "streams", "consumers", "messages", "bytes")
        for column in columns:
            table.add_column(column)
        table.add_column("API req/err")
        table.add_column("meta leader")
        for s in report.servers:
            if not s.jetstream:
                table.add_row(s.name, s.cluster, "-", "JetStream disabled", "", "", "", "", "")
                continue
            table.add_row(
                s.name,
                s.cluster,
                s.domain,
                str(s.streams),
                str(s.consumers),
                str(s.messages),
                str(s.bytes),
                f"{s.api_requests}/{s.api_errors}",
                "*" if s.meta_leader == s.name else "",
            )
        console.print(table)

    if report.ok:
        console.print("[bold green]verify: OK[/] - every edge's events reached the hub once")
    else:
        names = ", ".join(c.name for c in report.failed)
        console.print(f"[bold red]verify: FAILED[/] - broken: {names}")


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
