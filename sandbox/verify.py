"""The runbook's daily checks, automated: every edge's events reach the hub stream once.

``verify(topology)`` runs, in order:

1. every planned server is running and every edge has its SYS and APP leaf connections;
2. a live ``sub ops.>`` on the hub, then ``ops.<edge>.verify`` events published with the
   app user on every edge: each must be stored in the hub stream exactly once. The live
   subscriber sees the plain edges' events; a buffered edge's events reach the hub only
   through the stream source (its APP link denies ``ops.>``), so none arrive live;
3. the hub stream (``stream info``/``subjects``) exists with the stack's config, its
   replicas are current and each buffered edge is a source;
4. the system account sees every server (``$SYS.REQ.SERVER.PING.JSZ``, what
   ``nats server report jetstream`` shows), names are unique, the hub's JetStream has a meta leader.

The report is data (``VerifyReport.to_json()`` is the stable ``--json`` output); ``ok``
is False naming every failed check.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from components.jetstream import JetStreamError, connected
from components.stream_config import changed_keys
from sandbox import events, monitor
from sandbox.topology import Topology

SCHEMA_VERSION = 1
VERIFY_SUBJECTS = "ops.*.verify"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class EdgeEvents:
    """What happened to one edge's verify events."""

    edge: str
    server: str
    subject: str
    buffered: bool
    published: int
    acked_by: str  # "<stream>@<domain>" of the PubAcks: the edge buffer or the hub
    stored_once: int
    missing: int
    duplicated: int
    live_seen: int  # received by the live ``sub ops.>`` on the hub
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.stored_once == self.published


@dataclass(frozen=True)
class ServerRow:
    """One line of ``nats server report jetstream``."""

    name: str
    cluster: str
    domain: str
    jetstream: bool
    streams: int
    consumers: int
    messages: int
    bytes: int
    memory: int
    storage: int
    api_requests: int
    api_errors: int
    meta_leader: str


@dataclass
class VerifyReport:
    checks: list[Check] = field(default_factory=list)
    events: list[EdgeEvents] = field(default_factory=list)
    servers: list[ServerRow] = field(default_factory=list)
    stream: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "ok": self.ok,
            "failed": [c.name for c in self.failed],
            "checks": [asdict(c) for c in self.checks],
            "events": [{**asdict(e), "ok": e.ok} for e in self.events],
            "stream": self.stream,
            "servers": [asdict(s) for s in self.servers],
        }


def verify(topology: Topology, *, count: int = 3, timeout: float = 30.0) -> VerifyReport:
    """Run every check against a running topology (bounded by ``timeout`` per wait)."""
    return asyncio.run(verify_async(topology, count=count, timeout=timeout))


async def verify_async(
    topology: Topology, *, count: int = 3, timeout: float = 30.0
) -> VerifyReport:
    report = VerifyReport()
    _check_processes(topology, report)
    await _check_events(topology, report, count, timeout)
    await _check_stream(topology, report, timeout)
    await _check_system_view(topology, report, timeout)
    return report


def _check_processes(topology: Topology, report: VerifyReport) -> None:
    plan = topology.plan
    stopped = [s.name for s in plan.servers if not topology.running(s.name)]
    report.add(
        "servers running",
        not stopped,
        f"all {len(plan.servers)} running" if not stopped else f"not running: {', '.join(stopped)}",
    )
    problems = []
    for server in plan.edge_servers:
        accounts = monitor.leaf_accounts(server.http_port)
        if not {"SYS", "APP"} <= set(accounts):
            problems.append(f"{server.name} has leaf accounts {accounts or 'none'}")
    report.add(
        "leafnodes",
        not problems,
        "; ".join(problems) or f"{len(plan.edge_servers)} edges connected (SYS and APP)",
    )


async def _check_system_view(topology: Topology, report: VerifyReport, timeout: float) -> None:
    expected = [s.name for s in topology.plan.servers]
    # Stop listening once every running server answered; a stopped one shows as silent.
    running = sum(1 for name in expected if topology.running(name))
    try:
        async with connected(topology.hub_target("admin", timeout=timeout)) as admin:
            replies = await events.server_ping(
                admin, events.JSZ_PING, expected=running, timeout=min(timeout, 3.0)
            )
    except JetStreamError as error:
        report.add("system view", False, f"cannot ask the hub as admin: {error}")
        return
    report.servers = [_server_row(r) for r in replies]
    names = [row.name for row in report.servers]
    missing = sorted(set(expected) - set(names))
    twice = sorted(n for n, c in Counter(names).items() if c > 1)
    detail = f"{len(names)} servers answered $SYS.REQ.SERVER.PING.JSZ"
    if missing:
        detail += f"; silent: {', '.join(missing)}"
    if twice:
        detail += f"; answered more than once (duplicate names): {', '.join(twice)}"
    report.add("system view", not missing and not twice, detail)
    hub = [row for row in report.servers if row.name in {s.name for s in topology.plan.hub_servers}]
    if len(topology.plan.hub_servers) == 1:
        enabled = bool(hub) and hub[0].jetstream
        report.add(
            "hub jetstream",
            enabled,
            "single server, JetStream enabled" if enabled else "the hub has no JetStream",
        )
        return
    leaders = {row.meta_leader for row in hub if row.meta_leader}
    report.add(
        "hub jetstream",
        len(leaders) == 1,
        f"meta leader {next(iter(leaders))}"
        if len(leaders) == 1
        else f"hub reports meta leaders {sorted(leaders) or 'none'}",
    )


async def _check_stream(topology: Topology, report: VerifyReport, timeout: float) -> None:
    desired = topology.plan.stream
    name = desired["name"]
    target = topology.hub_target("app", timeout=timeout)
    try:
        async with connected(target) as hub:
            info = await events.stream_info(hub, target, name, subjects=True)
    except JetStreamError as error:
        report.add("stream", False, f"cannot read stream {name!r}: {error}")
        return
    if info is None:
        report.add("stream", False, f"stream {name!r} does not exist on the hub; run `up` again")
        return
    report.stream = _stream_summary(info)
    drift = changed_keys(desired, info["config"])
    cluster = info.get("cluster") or {}
    lagging = [r["name"] for r in cluster.get("replicas") or [] if not r.get("current")]
    problems = []
    if drift:
        problems.append(f"differs from the stack in {', '.join(drift)}")
    if lagging:
        problems.append(f"replicas not current: {', '.join(lagging)}")
    want = desired.get("num_replicas", 1)
    have = 1 + len(cluster.get("replicas") or [])
    if want > 1 and have != want:
        problems.append(f"{have} of {want} replicas placed")
    report.add(
        "stream",
        not problems,
        "; ".join(problems)
        or f"{name}: {info['state']['messages']} messages, R{want}, leader {cluster.get('leader')}",
    )
    sources = {s["external"]["api"]: s for s in info.get("sources") or []}
    booted_buffers = [e for e in topology.plan.edges if e in topology.plan.buffers]
    absent = [e for e in booted_buffers if f"$JS.{e}.API" not in sources]
    if booted_buffers or sources:
        report.add(
            "stream sources",
            not absent,
            f"not sourced: {', '.join(absent)}"
            if absent
            else ", ".join(f"{api} lag {s.get('lag', 0)}" for api, s in sources.items()),
        )


@dataclass(frozen=True)
class _Sent:
    edge: str
    subject: str
    ids: list[str]
    acked_by: str
    error: str = ""


async def _check_events(
    topology: Topology, report: VerifyReport, count: int, timeout: float
) -> None:
    plan = topology.plan
    stream = plan.stream["name"]
    hub_servers = [s for s in plan.hub_servers if topology.running(s.name)]
    if not hub_servers or not plan.edges:
        report.add("events", False, "no running hub server" if plan.edges else "no edge booted")
        return
    target = topology.hub_target("app", timeout=timeout)
    listener = topology.target(hub_servers[0].name, "app", timeout=timeout)
    peers = [topology.target(s.name, "app", timeout=timeout) for s in hub_servers[1:]]
    try:
        async with (
            connected(target) as hub,
            events.live_subscription(listener, "ops.>", peers=peers, timeout=timeout) as live,
        ):
            start = await events.last_seq(hub, target, stream) + 1
            sent = [await _publish(topology, edge, count, timeout) for edge in plan.edges]
            ids = [i for s in sent for i in s.ids]
            stored = await events.wait_for_ids(
                hub, target, stream, VERIFY_SUBJECTS, ids, start, timeout=timeout
            )
            plain = [i for s in sent if s.edge not in plan.buffers for i in s.ids]
            seen = await _wait_live(live, plain, timeout)
    except JetStreamError as error:
        report.add("events", False, f"event path broken: {error}")
        return
    report.events = [_edge_events(topology, s, stored, seen) for s in sent]
    for edge in report.events:
        report.add(f"events {edge.edge}", edge.ok, _events_detail(edge))
    _check_live(report)


async def _publish(topology: Topology, edge: str, count: int, timeout: float) -> _Sent:
    server = topology.plan.edge_server(edge)
    subject = f"ops.{edge}.verify"
    if not topology.running(server.name):
        return _Sent(edge, subject, [], "", f"{server.name} is not running")
    ids = events.make_ids(edge, count)
    try:
        async with connected(topology.target(server.name, "app", timeout=timeout)) as client:
            acks = await events.publish(client, subject, ids, timeout=min(timeout, 5.0))
    except JetStreamError as error:
        return _Sent(edge, subject, [], "", str(error))
    acked_by = sorted({f"{a.get('stream')}@{a.get('domain') or '-'}" for a in acks})
    return _Sent(edge, subject, ids, ",".join(acked_by))


async def _wait_live(
    live: events.LiveSubscription, expected: list[str], timeout: float
) -> Counter[str]:
    # Core messages are not retried: they are there within moments or never; wait bounded.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(timeout, 5.0)
    while loop.time() < deadline and not all(live.ids()[i] for i in expected):
        await asyncio.sleep(0.1)
    return live.ids()


def _check_live(report: VerifyReport) -> None:
    problems = []
    for edge in report.events:
        if edge.buffered and edge.live_seen:
            problems.append(
                f"{edge.edge} is buffered but {edge.live_seen} events arrived live "
                "(its APP remote should deny ops.>)"
            )
        if not edge.buffered and edge.published and edge.live_seen != edge.published:
            problems.append(f"{edge.edge}: {edge.live_seen} of {edge.published} seen live")
    plain = [e.edge for e in report.events if not e.buffered]
    buffered = [e.edge for e in report.events if e.buffered]
    detail = f"live events from {', '.join(plain) or 'no plain edge'}"
    if buffered:
        detail += f"; none from buffered {', '.join(buffered)} (they arrive via the stream source)"
    report.add("live sub ops.> on the hub", not problems, "; ".join(problems) or detail)


def _edge_events(
    topology: Topology, sent: _Sent, stored: Counter[str], seen: Counter[str]
) -> EdgeEvents:
    return EdgeEvents(
        edge=sent.edge,
        server=topology.plan.edge_server(sent.edge).name,
        subject=sent.subject,
        buffered=sent.edge in topology.plan.buffers,
        published=len(sent.ids),
        acked_by=sent.acked_by,
        stored_once=sum(1 for i in sent.ids if stored[i] == 1),
        missing=sum(1 for i in sent.ids if stored[i] == 0),
        duplicated=sum(1 for i in sent.ids if stored[i] > 1),
        live_seen=sum(seen[i] for i in sent.ids),
        error=sent.error,
    )


def _events_detail(edge: EdgeEvents) -> str:
    if edge.error:
        return f"publishing on {edge.server} failed: {edge.error}"
    text = (
        f"{edge.stored_once}/{edge.published} {edge.subject} stored exactly once "
        f"(acked by {edge.acked_by})"
    )
    if edge.missing:
        text += f"; {edge.missing} missing"
    if edge.duplicated:
        text += f"; {edge.duplicated} stored more than once"
    return text


def _server_row(reply: dict[str, Any]) -> ServerRow:
    server = reply.get("server", {})
    data = reply.get("data", {})
    api = data.get("api") or {}
    meta = data.get("meta_cluster") or {}
    return ServerRow(
        name=server.get("name", "?"),
        cluster=server.get("cluster", ""),
        domain=server.get("domain", "") or data.get("config", {}).get("domain", ""),
        jetstream=not data.get("disabled", False),
        streams=int(data.get("streams", 0)),
        consumers=int(data.get("consumers", 0)),
        messages=int(data.get("messages", 0)),
        bytes=int(data.get("bytes", 0)),
        memory=int(data.get("memory", 0)),
        storage=int(data.get("storage", 0)),
        api_requests=int(api.get("total", 0)),
        api_errors=int(api.get("errors", 0)),
        meta_leader=meta.get("leader", ""),
    )


def _stream_summary(info: dict[str, Any]) -> dict[str, Any]:
    config, state = info["config"], info["state"]
    cluster = info.get("cluster") or {}
    return {
        "name": config["name"],
        "subjects": config.get("subjects", []),
        "storage": config.get("storage"),
        "replicas": config.get("num_replicas", 1),
        "leader": cluster.get("leader", ""),
        "messages": state.get("messages", 0),
        "bytes": state.get("bytes", 0),
        "first_seq": state.get("first_seq", 0),
        "last_seq": state.get("last_seq", 0),
        "subject_counts": dict(sorted((state.get("subjects") or {}).items())),
        "sources": [
            {
                "api": s.get("external", {}).get("api", ""),
                "lag": s.get("lag", 0),
                "active_ns": s.get("active", -1),
                "error": (s.get("error") or {}).get("description", ""),
            }
            for s in info.get("sources") or []
        ],
    }
