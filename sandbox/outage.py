"""``python -m sandbox outage``: the store-and-forward drill on the local topology.

A buffered edge must not lose an event while the hub (or its link to the hub) is away.
``drill(topology)`` proves it on real servers, every wait bounded:

1. publish the first events on every buffered edge (acked by the edge's own stream);
2. cut: stop every hub server (``cut="hub"``), or only the hub servers the buffered
   edges' leafnodes dial (``cut="link"``: the hub keeps its quorum, the edges are cut off);
3. publish the rest on every buffered edge: each publish must be acked by the edge;
4. restart what was stopped; a hub that came back without its stream (memory storage)
   gets it re-declared, as ``pulumi up --refresh`` does, and the stream re-sources
   what the edges retained;
5. wait until the hub stream holds every event, then count: delivered, lost,
   duplicated, out of order (per edge), and the drain time (from the restart until the
   last event was stored, the hub's own start-up included).

Each run publishes on its own subjects (``ops.<edge>.outage.<run>``), so a sandbox that
is ``up`` can be drilled again and again; events of earlier runs are never counted.

    python -m sandbox outage --events 1000 [--json]

boots the hub and the buffered edges of the stack files in a temporary state directory
(stopped and removed afterwards) unless a sandbox is already up in ``--state-dir``
(default ``.sandbox/``): then that one is drilled and left running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nats
from nats.aio.client import Client
from rich.console import Console

from components.jetstream import JetStreamError, Target, connected
from sandbox import arguments, events, monitor
from sandbox import state as state_store
from sandbox.stacks import StackError, load_stacks
from sandbox.topology import DEFAULT_TIMEOUT, NotUp, Topology

Cut = Literal["hub", "link"]
Say = Callable[[str], None]

SCHEMA_VERSION = 1
DEFAULT_EVENTS = 1000
DEFAULT_DRAIN_TIMEOUT = 120.0
PUBLISH_TIMEOUT = 5.0
_POLL = 0.1
_SETTLE = 1.0  # recount after this long: a late duplicate would show up here
_STREAM_NOT_FOUND = 10059


class OutageError(RuntimeError):
    """The drill cannot run on this topology; the message names the fix."""


# ---------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class Delivery:
    """What the hub stream holds of the events one or more publishers had acked."""

    events: int  # acked by a stream when published
    delivered: int  # of those, stored at least once
    lost: int  # acked but not stored
    duplicated: int  # stored more than once
    out_of_order: int  # stored after an event its publisher published later
    lost_ids: tuple[str, ...] = ()  # the first few, for the report

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0

    def __add__(self, other: Delivery) -> Delivery:
        return Delivery(
            events=self.events + other.events,
            delivered=self.delivered + other.delivered,
            lost=self.lost + other.lost,
            duplicated=self.duplicated + other.duplicated,
            out_of_order=self.out_of_order + other.out_of_order,
            lost_ids=(self.lost_ids + other.lost_ids)[:5],
        )


NOTHING = Delivery(events=0, delivered=0, lost=0, duplicated=0, out_of_order=0)


def analyse(published: Sequence[str], stored: Sequence[str | None]) -> Delivery:
    """Compare one publisher's acked ids (in publish order) with the stream's (in seq order).

    Ids in ``stored`` that were not published (other runs, other publishers) are ignored.
    An event is out of order when it was stored after one its publisher sent later.
    """
    position = {one: index for index, one in enumerate(published)}
    counts: Counter[str] = Counter()
    out_of_order = 0
    highest = -1
    for one in stored:
        if one is None or one not in position:
            continue
        counts[one] += 1
        if counts[one] > 1:
            continue  # a duplicate is counted as such, not again as out of order
        if position[one] < highest:
            out_of_order += 1
        highest = max(highest, position[one])
    lost = [one for one in published if not counts[one]]
    return Delivery(
        events=len(published),
        delivered=len(published) - len(lost),
        lost=len(lost),
        duplicated=sum(1 for one in published if counts[one] > 1),
        out_of_order=out_of_order,
        lost_ids=tuple(lost[:5]),
    )


# ---------------------------------------------------------------------------- publishing


@dataclass
class Publisher:
    """One edge's events of one run: the ids in publish order and how they were acked."""

    edge: str
    server: str
    subject: str
    ids: list[str]
    acked: list[str] = field(default_factory=list)  # ids a stream acknowledged, in order
    acked_by: Counter[str] = field(default_factory=Counter)  # "<stream>@<domain>" -> count
    retries: int = 0  # publishes sent again (``retry_for``)
    error: str = ""


def new_publisher(topology: Topology, edge: str, count: int, run: str) -> Publisher:
    subject = f"ops.{edge}.outage.{run}"
    return Publisher(
        edge=edge,
        server=topology.plan.edge_server(edge).name,
        subject=subject,
        ids=[f"{edge}-{run}-{n}" for n in range(count)],
    )


async def publish_range(
    topology: Topology,
    publisher: Publisher,
    start: int,
    stop: int,
    *,
    timeout: float,
    retry_for: float = 0.0,
) -> Counter[str]:
    """Publish ids ``[start, stop)`` one acked request at a time; stop at the first failure.

    Returns who acked this batch. A failure is kept in ``publisher.error``: the events
    not acked are not counted as published (their publisher knows they were not stored).

    ``retry_for`` > 0 makes it a careful publisher: an unanswered publish (no stream
    listening for a moment, e.g. while a stream leader is elected) is sent again for up
    to that many seconds, every message carrying its id as ``Nats-Msg-Id`` so that the
    stream drops a repeat of one that was stored after all. Off by default: on the
    drill's buffered edges the id would also let the hub hide a duplicate the source
    itself made, which is exactly what the drill must see.
    """
    batch: Counter[str] = Counter()
    if publisher.error or start >= stop:
        return batch
    target = topology.target(publisher.server, "app", timeout=timeout)
    try:
        async with connected(target) as client:
            for one in publisher.ids[start:stop]:
                ack = await _publish_retrying(client, publisher, one, timeout, retry_for)
                by = f"{ack.get('stream')}@{ack.get('domain') or '-'}"
                batch[by] += 1
                publisher.acked.append(one)
    except JetStreamError as error:
        publisher.error = f"{publisher.server}: {error}"
    publisher.acked_by.update(batch)
    return batch


class _Unanswered(JetStreamError):
    """No stream acked the publish, or one said it cannot for now: it may be sent again."""


async def _publish_retrying(
    client: Client, publisher: Publisher, one: str, timeout: float, retry_for: float
) -> dict[str, Any]:
    headers = {"Nats-Msg-Id": one} if retry_for > 0 else None
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return await _publish_one(client, publisher.subject, one, timeout, headers)
        except _Unanswered:
            if time.monotonic() >= deadline:
                raise
        publisher.retries += 1
        await asyncio.sleep(_POLL)


async def _publish_one(
    client: Client, subject: str, one: str, timeout: float, headers: dict[str, str] | None
) -> dict[str, Any]:
    data = events.payload(one, subject=subject)
    try:
        reply = await client.request(subject, data, timeout=timeout, headers=headers)
    except nats.errors.NoRespondersError:
        raise _Unanswered(f"no stream stored {subject} (no responders)") from None
    except nats.errors.TimeoutError:
        raise _Unanswered(f"no stream acknowledged {subject} within {timeout:.0f}s") from None
    response = json.loads(reply.data)
    error = response.get("error")
    if error:
        message = f"publishing {subject} was refused: {error}"
        # 503 is JetStream's "unavailable for now" (e.g. "raft: not leader" mid-election).
        raise (_Unanswered if error.get("code") == 503 else JetStreamError)(message)
    return response


# ---------------------------------------------------------------------------- hub stream


async def stored_ids(
    client: Client, target: Target, stream: str, publisher: Publisher
) -> list[str | None]:
    """Ids on the publisher's subject in stream order (bounded: twice what was published)."""
    found = await events.stream_events(
        client, target, stream, publisher.subject, start_seq=1, limit=2 * len(publisher.ids) + 10
    )
    return [events.event_id(e.data) for e in found]


async def count_deliveries(
    topology: Topology, publishers: Sequence[Publisher], *, settle: float = _SETTLE
) -> dict[str, Delivery]:
    """Each publisher's acked events as the hub stream holds them, after ``settle`` seconds.

    Call it once every event arrived (``wait_stored``): the recount after ``settle`` is
    what would catch a late duplicate.
    """
    await asyncio.sleep(settle)
    stream = topology.plan.stream["name"]
    target = topology.hub_target("app", timeout=topology.timeout)
    found: dict[str, Delivery] = {}
    async with connected(target) as hub:
        for p in publishers:
            found[p.edge] = analyse(p.acked, await stored_ids(hub, target, stream, p))
    return found


async def wait_stored(
    topology: Topology, publishers: Sequence[Publisher], *, timeout: float
) -> float | None:
    """Seconds until the hub stream held as many events on each publisher's subject as
    it acked (None if not within ``timeout``). Keeps asking while the hub is down."""
    started = time.monotonic()
    poll = _Poll(topology, publishers)
    try:
        while time.monotonic() - started < timeout:
            if await poll.complete():
                return time.monotonic() - started
            await asyncio.sleep(_POLL)
        return None
    finally:
        await poll.close()


class _Poll:
    """Counts of the publishers' subjects in the hub stream, over a connection that is made
    (again) whenever the hub answers: the hub may be down or restarting meanwhile."""

    def __init__(self, topology: Topology, publishers: Sequence[Publisher]) -> None:
        self.stream = topology.plan.stream["name"]
        self.target = topology.hub_target("app", timeout=topology.timeout)
        self.want = {p.subject: len(p.acked) for p in publishers}
        self.client: Client | None = None

    async def counts(self) -> dict[str, int] | None:
        """Messages per subject; None when the hub answers that the stream does not exist;
        empty while nothing answers."""
        if self.client is not None and self.client.is_closed:
            self.client = None  # the server it reached went away again: connect anew
        self.client = self.client or await _try_connect(self.target)
        if self.client is None:
            return {}
        found: dict[str, int] = {}
        for subject in self.want:
            try:
                counts = await subject_counts(self.client, self.stream, subject)
            except (JetStreamError, nats.errors.Error):
                return {}  # JetStream still starting, or the connection broke: ask again
            if counts is None:
                return None
            found[subject] = counts.get(subject, 0)
        return found

    async def complete(self) -> bool | None:
        """Every acked event is stored (None: the stream does not exist)."""
        counts = await self.counts()
        if counts is None:
            return None
        return bool(counts) and all(counts.get(s, 0) >= n for s, n in self.want.items())

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()


async def subject_counts(client: Client, stream: str, pattern: str) -> dict[str, int] | None:
    """Messages per subject matching ``pattern`` in the hub stream; None if it does not exist.

    Raises ``JetStreamError`` while JetStream does not answer (still starting).
    """
    body = json.dumps({"subjects_filter": pattern}).encode()
    try:
        reply = await client.request(f"$JS.API.STREAM.INFO.{stream}", body, timeout=2.0)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as error:
        raise JetStreamError(f"JetStream not answering ({type(error).__name__})") from None
    info = json.loads(reply.data)
    error = info.get("error")
    if error:
        if error.get("err_code") == _STREAM_NOT_FOUND:
            return None
        raise JetStreamError(f"stream info {stream}: {error.get('description')}")
    return dict(info["state"].get("subjects") or {})


async def _try_connect(target: Target) -> Client | None:
    """One short attempt at each server (the hub may still be down: None then)."""
    try:
        return await nats.connect(
            servers=list(target.servers),
            user=target.user,
            password=target.password,
            connect_timeout=1.0,
            # Reconnecting would make this call wait (forever, with -1): fail fast instead
            # and let the caller's bounded loop try again.
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_quiet,
        )
    except Exception:  # nats-py raises several unrelated types while nothing listens
        return None


async def _quiet(_error: Exception) -> None:
    return None


# ---------------------------------------------------------------------------- the drill


@dataclass
class OutageReport:
    """The drill's outcome; ``to_json()`` is the stable ``--json`` output."""

    cut: Cut
    run: str  # the run's label: its events are on ops.<edge>.outage.<run>
    edges: list[str]
    stopped: list[str]  # servers stopped for the outage
    published_before: int  # acked before the cut (all edges)
    published_during: int  # attempted during the cut
    acked_during: int  # of those, acked (by the edges' own streams)
    acked_by_during: dict[str, int]  # "<stream>@<domain>" -> acks during the cut
    delivery: Delivery
    drain_seconds: float | None  # restart -> every event stored; None if it never was
    restart_seconds: float  # restart -> the stopped servers were ready
    stream_redeclared: bool  # the hub came back without its stream (memory storage)
    link_was_cut: bool  # every buffered edge lost its leafnode connection during the cut
    per_edge: dict[str, Delivery] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.errors
            and self.delivery.ok
            and self.acked_during == self.published_during
            and self.drain_seconds is not None
        )

    def to_json(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "version": SCHEMA_VERSION,
            "ok": self.ok,
            "cut": self.cut,
            "run": self.run,
            "edges": self.edges,
            "stoppedServers": self.stopped,
            "events": d.events,
            "delivered": d.delivered,
            "lost": d.lost,
            "duplicated": d.duplicated,
            "outOfOrder": d.out_of_order,
            "drainSeconds": _round(self.drain_seconds),
            "restartSeconds": _round(self.restart_seconds),
            "publishedBefore": self.published_before,
            "publishedDuring": self.published_during,
            "ackedDuringOutage": self.acked_during,
            "ackedByDuringOutage": dict(sorted(self.acked_by_during.items())),
            "streamRedeclared": self.stream_redeclared,
            "linkWasCut": self.link_was_cut,
            "perEdge": {
                edge: {
                    "events": e.events,
                    "delivered": e.delivered,
                    "lost": e.lost,
                    "duplicated": e.duplicated,
                    "outOfOrder": e.out_of_order,
                }
                for edge, e in self.per_edge.items()
            },
            "lostIds": list(d.lost_ids),
            "errors": self.errors,
        }


def drill(
    topology: Topology,
    *,
    events_per_edge: int = DEFAULT_EVENTS,
    before: int | None = None,
    cut: Cut = "hub",
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    say: Say | None = None,
) -> OutageReport:
    """Run the drill on a running topology; whatever it stops is started again.

    ``events_per_edge`` events go out on every buffered edge, ``before`` of them (default
    a tenth) before the cut and the rest during it.
    """
    if events_per_edge < 1:
        raise OutageError("publish at least one event per edge")
    if before is None:
        before = events_per_edge // 10
    if not 0 <= before <= events_per_edge:
        raise OutageError(f"before={before} must lie between 0 and {events_per_edge}")
    return asyncio.run(_drill(topology, events_per_edge, before, cut, drain_timeout, say))


async def _drill(
    topology: Topology,
    count: int,
    before: int,
    cut: Cut,
    drain_timeout: float,
    say: Say | None,
) -> OutageReport:
    def tell(message: str) -> None:
        if say:
            say(message)

    edges = _preflight(topology)
    stopped = _servers_to_stop(topology, edges, cut)
    run = uuid.uuid4().hex[:8]
    publishers = [new_publisher(topology, edge, count, run) for edge in edges]
    timeout = min(PUBLISH_TIMEOUT, topology.timeout)

    tell(f"publishing {before} events on {', '.join(edges)} with the hub up")
    for p in publishers:
        await publish_range(topology, p, 0, before, timeout=timeout)
    published_before = sum(len(p.acked) for p in publishers)

    what = "every hub server" if cut == "hub" else "the hub servers the buffered edges dial"
    tell(f"cutting off the edges: stopping {what} ({', '.join(stopped)})")
    acked_by: Counter[str] = Counter()
    link_was_cut = False
    restoring = False
    try:
        if cut == "hub":
            topology.stop_hub()  # all at once, as when the hub's site goes away
        else:
            for name in stopped:
                topology.stop_server(name)
        link_was_cut = _wait_link_down(topology, edges)
        tell(f"publishing {count - before} events on each buffered edge during the outage")
        for p in publishers:
            acked_by.update(await publish_range(topology, p, before, count, timeout=timeout))
        tell(f"starting {', '.join(stopped)} again; waiting for the hub stream to drain")
        restoring = True  # from here on _restore_and_drain sees the restart through
        restart_seconds, drain_seconds, redeclared = await _restore_and_drain(
            topology, stopped, publishers, drain_timeout
        )
    finally:
        if not restoring:  # an error or Ctrl-C mid-drill: never leave the hub stopped
            _restart_quietly(topology, stopped)

    per_edge = await count_deliveries(topology, publishers)
    delivery = sum(per_edge.values(), NOTHING)
    errors = [p.error for p in publishers if p.error]
    if drain_seconds is None:
        errors.append(
            f"the hub stream did not hold every event within {drain_timeout:.0f}s "
            "(raise --drain-timeout on a slow machine)"
        )
    if not link_was_cut:
        errors.append("a buffered edge kept its leafnode connection: the outage did not happen")
    report = OutageReport(
        cut=cut,
        run=run,
        edges=edges,
        stopped=stopped,
        published_before=published_before,
        published_during=len(publishers) * (count - before),
        acked_during=sum(acked_by.values()),
        acked_by_during=dict(acked_by),
        delivery=delivery,
        drain_seconds=drain_seconds,
        restart_seconds=restart_seconds,
        stream_redeclared=redeclared,
        link_was_cut=link_was_cut,
        per_edge=per_edge,
        errors=errors,
    )
    tell("done" if report.ok else "done: events were lost, duplicated or reordered")
    return report


def _preflight(topology: Topology) -> list[str]:
    plan = topology.plan
    edges = [e for e in plan.edges if e in plan.buffers]
    if not edges:
        raise OutageError(
            "no buffered edge in this sandbox: the drill needs an edge with "
            "ops-nats:edge.buffer.enabled (e.g. stacks/Pulumi.edge-a.yaml)"
        )
    down = [s.name for s in plan.servers if not topology.running(s.name)]
    if down:
        raise OutageError(
            f"not running: {', '.join(down)}; the drill starts from a healthy sandbox "
            "(`python -m sandbox status`, or `down` and `up` again)"
        )
    unlinked = [e for e in edges if "APP" not in monitor.leaf_accounts(_edge_port(topology, e))]
    if unlinked:
        raise OutageError(f"edges not connected to the hub: {', '.join(unlinked)}")
    return edges


def _edge_port(topology: Topology, edge: str) -> int:
    return topology.plan.edge_server(edge).http_port


def _servers_to_stop(topology: Topology, edges: list[str], cut: Cut) -> list[str]:
    hub = [s.name for s in topology.plan.hub_servers]
    if cut == "hub":
        return hub
    dialled = {topology.plan.edge_server(e).hub_server for e in edges}
    return [name for name in hub if name in dialled]


def _wait_link_down(topology: Topology, edges: list[str], timeout: float = 10.0) -> bool:
    """Every buffered edge noticed that its APP leafnode connection is gone."""
    ports = [_edge_port(topology, e) for e in edges]
    deadline = time.monotonic() + timeout
    while True:
        if all("APP" not in monitor.leaf_accounts(port) for port in ports):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)


async def _restore_and_drain(
    topology: Topology, stopped: list[str], publishers: list[Publisher], timeout: float
) -> tuple[float, float | None, bool]:
    """Start ``stopped`` again while watching the hub stream fill up.

    Returns (seconds until the servers were ready, seconds until every acked event was
    stored or None, whether the stream had to be re-declared). The watching runs beside
    the restart so that the drain time is the stream's, not the restart's polling.
    """
    started = time.monotonic()
    restart = asyncio.create_task(asyncio.to_thread(_restart, topology, stopped))
    ready_at: float | None = None
    drained_at: float | None = None
    redeclared = False
    poll = _Poll(topology, publishers)
    try:
        while time.monotonic() - started < timeout:
            if restart.done() and ready_at is None:
                restart.result()  # a server that did not come back raises here
                ready_at = time.monotonic()
            complete = await poll.complete()
            if complete is None and ready_at is not None and not redeclared:
                # The hub is back without its stream (memory storage, full restart):
                # declare it again as `pulumi up --refresh` does; it re-sources the edges.
                await asyncio.to_thread(topology.ensure_streams)
                redeclared = True
            elif complete:
                drained_at = drained_at or time.monotonic()
                if ready_at is not None:
                    break
            await asyncio.sleep(_POLL)
        if ready_at is None:
            await restart  # bounded by the topology's own timeout
            ready_at = time.monotonic()
    finally:
        await poll.close()
        if not restart.done():
            # Interrupted while the servers start: let that finish (bounded by the
            # topology's timeout) rather than leave half a hub behind.
            with contextlib.suppress(Exception):
                await asyncio.shield(restart)
    drain = None if drained_at is None else drained_at - started
    return ready_at - started, drain, redeclared


def _restart(topology: Topology, names: list[str]) -> None:
    hub = [s.name for s in topology.plan.hub_servers]
    if sorted(names) == sorted(hub):
        topology.start_hub()  # waits for the cluster, JetStream and the edges' leafnodes
        return
    for name in names:
        topology.start_server(name)


def _restart_quietly(topology: Topology, names: list[str]) -> None:
    with contextlib.suppress(Exception):
        _restart(topology, names)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    """Add ``outage`` to the sandbox CLI (``sandbox/cli.py`` calls ``run(args, console)``)."""
    parser = subparsers.add_parser(
        "outage",
        help="store-and-forward drill: stop the hub, publish on buffered edges, count",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events",
        type=arguments.positive,
        default=DEFAULT_EVENTS,
        help=f"events per buffered edge (default {DEFAULT_EVENTS}); a tenth before the "
        "outage, the rest while the hub is down",
    )
    parser.add_argument(
        "--before",
        type=arguments.non_negative,
        default=None,
        help="of those, how many to publish before the outage (default a tenth)",
    )
    parser.add_argument(
        "--cut",
        choices=["hub", "link"],
        default="hub",
        help="hub: stop every hub server (default); link: stop only the hub servers the "
        "buffered edges dial, so the hub stays up and the edges are cut off",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="drill the sandbox up there; if none is, boot one there and stop it afterwards "
        "(default: the sandbox in .sandbox/ if up, else a temporary one)",
    )
    parser.add_argument("--stacks-dir", type=Path, default=Path(__file__).parents[1] / "stacks")
    parser.add_argument(
        "--stacks",
        type=arguments.stack_list,
        default=None,
        help="stacks to boot (default: the hub and every buffered edge in --stacks-dir)",
    )
    parser.add_argument(
        "--timeout",
        type=arguments.seconds,
        default=DEFAULT_TIMEOUT,
        help=f"bound of each server wait in seconds (default {DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument(
        "--drain-timeout",
        type=arguments.seconds,
        default=DEFAULT_DRAIN_TIMEOUT,
        help="how long the hub stream may take to hold every event, in seconds "
        f"(default {DEFAULT_DRAIN_TIMEOUT:.0f})",
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Exit 0 when nothing was lost, duplicated or reordered, 1 otherwise."""
    say: Say | None = None if args.json else (lambda m: console.log(m, highlight=False))
    try:
        if args.before is not None and args.before > args.events:
            raise OutageError(f"--before {args.before} is more than --events {args.events}")
        with _sandbox(args, say) as topology:
            report = drill(
                topology,
                events_per_edge=args.events,
                before=args.before,
                cut=args.cut,
                drain_timeout=args.drain_timeout,
                say=say,
            )
    except OutageError as error:
        # The CLI's other operator errors (boot, stacks, JetStream) are reported by cli.main.
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print_report(console, report)
    return 0 if report.ok else 1


@contextlib.contextmanager
def _sandbox(args: argparse.Namespace, say: Say | None) -> Iterator[Topology]:
    """The running sandbox of the state dir, else one booted for the drill (then stopped)."""
    explicit = args.state_dir is not None
    state_dir = args.state_dir if explicit else state_store.default_state_dir()
    running = _running(state_dir, args.timeout)
    if running is not None:
        if say:
            say(f"drilling the sandbox that is up in {state_dir} (it stays up)")
        yield running
        return
    stacks = load_stacks(args.stacks_dir, _stack_names(args))
    with contextlib.ExitStack() as cleanup:
        if not explicit:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="outage-")))
        if say:
            edges = ", ".join(e.name for e in stacks.edges)
            say(f"booting hub {stacks.hub.name} and {edges} in {state_dir}")
        topology = Topology.boot(stacks, state_dir, timeout=args.timeout, progress=say)
        try:
            yield topology
        finally:
            stopped = topology.down()
            if say:
                say(f"stopped {len(stopped)} servers ({', '.join(stopped)})")


def _running(state_dir: Path, timeout: float) -> Topology | None:
    try:
        topology = Topology.attach(state_dir, timeout=timeout)
    except NotUp:
        return None
    if not any(topology.running(s.name) for s in topology.plan.servers):
        return None  # a stale state file: nothing of it is running
    return topology


def _stack_names(args: argparse.Namespace) -> list[str]:
    if args.stacks:
        return list(args.stacks)
    every = load_stacks(args.stacks_dir)
    buffered = set(every.buffered_edges)
    edges = [e.name for e in every.edges if e.settings.edge_name in buffered]
    if not edges:
        raise StackError(
            f"no buffered edge stack in {args.stacks_dir}: the drill needs one with "
            "ops-nats:edge.buffer.enabled: true"
        )
    return [every.hub.name, *edges]


def print_report(console: Console, report: OutageReport) -> None:
    d = report.delivery
    cut = "every hub server" if report.cut == "hub" else "the edges' links"
    console.print(
        f"[bold]outage drill[/] ({cut} down: {', '.join(report.stopped)}), "
        f"buffered edges {', '.join(report.edges)}"
    )
    acks = ", ".join(f"{n} by {by}" for by, n in sorted(report.acked_by_during.items()))
    console.print(
        f"  published: {report.published_before} before, {report.published_during} during "
        f"the outage ({report.acked_during} acked: {acks or 'none'})",
        highlight=False,
    )
    console.print(
        f"  hub stream: {d.delivered}/{d.events} delivered, {d.lost} lost, "
        f"{d.duplicated} duplicated, {d.out_of_order} out of order",
        highlight=False,
    )
    drain = "never" if report.drain_seconds is None else f"{report.drain_seconds:.2f}s"
    note = "; the stream was re-declared (memory storage)" if report.stream_redeclared else ""
    console.print(
        f"  drain: {drain} after the restart (servers ready after "
        f"{report.restart_seconds:.2f}s){note}",
        highlight=False,
    )
    for error in report.errors:
        console.print(f"  [red]problem:[/] {error}", highlight=False)
    if report.ok:
        console.print("[bold green]outage: OK[/] - every event stored exactly once, in order")
    else:
        console.print("[bold red]outage: FAILED[/]")
