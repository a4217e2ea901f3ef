"""The runbook's client commands as async functions: pub, sub, stream view, server report.

All take a ``components.jetstream.Target`` (get one from ``Topology.target`` or
``Topology.hub_target``) and bound every wait. Counting uses ``STREAM.MSG.GET`` with
``next_by_subj``: no consumer is created, so counting never changes the stream.

    hub_target = topo.hub_target("app")
    async with connected(hub_target) as hub:
        start = await last_seq(hub, hub_target, "ops") + 1
        ids = make_ids("edge-b", 3)
        async with connected(topo.target("edge-b-nats-0", "app")) as edge:
            await publish(edge, "ops.edge-b.verify", ids)
        counts = await wait_for_ids(
            hub, hub_target, "ops", "ops.edge-b.verify", ids, start, timeout=20
        )
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from components import jetstream
from components.jetstream import JetStreamError, Target, connected

NO_MESSAGE = 10037  # JSNoMessageFoundErr
JSZ_PING = "$SYS.REQ.SERVER.PING.JSZ"
STATSZ_PING = "$SYS.REQ.SERVER.PING"


@dataclass(frozen=True)
class Event:
    """One stored message of the stream."""

    seq: int
    subject: str
    data: bytes


def make_ids(label: str, count: int) -> list[str]:
    """``count`` ids unique to this run, e.g. ``edge-b-3f2a9c1d-0``."""
    run = uuid.uuid4().hex[:8]
    return [f"{label}-{run}-{n}" for n in range(count)]


def payload(event_id: str, **fields: Any) -> bytes:
    """A small JSON event like the ops software publishes, carrying ``event_id``."""
    return json.dumps({"id": event_id, **fields}, sort_keys=True).encode()


def event_id(data: bytes) -> str | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value.get("id") if isinstance(value, dict) else None


async def publish(
    client: Client, subject: str, ids: Iterable[str], *, ack: bool = True, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """Publish one event per id; with ``ack`` each waits for a stream's PubAck.

    On a buffered edge the ack comes from the edge's own stream (its domain), on a plain
    edge from the hub stream: both mean "stored". Returns the acks (empty without ack).
    """
    acks = []
    for one in ids:
        data = payload(one, subject=subject)
        if not ack:
            await client.publish(subject, data)
            continue
        try:
            reply = await client.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise JetStreamError(
                f"no stream stored {subject}: nothing listens for it (is the hub stream there "
                "and the edge's leafnode connected?)"
            ) from None
        except nats.errors.TimeoutError:
            raise JetStreamError(
                f"no stream acknowledged {subject} within {timeout:.0f}s"
            ) from None
        response = json.loads(reply.data)
        if "error" in response:
            raise JetStreamError(f"publishing {subject} was refused: {response['error']}")
        acks.append(response)
    if not ack:
        await client.flush(timeout=timeout)
    return acks


async def stream_info(
    client: Client, target: Target, stream: str, *, subjects: bool = False
) -> dict[str, Any] | None:
    """``stream info`` (and ``stream subjects`` with ``subjects``); None if there is none."""
    body = {"subjects_filter": ">"} if subjects else {}
    return await jetstream.api(client, target, f"STREAM.INFO.{stream}", body, allow_missing=True)


async def last_seq(client: Client, target: Target, stream: str) -> int:
    info = await stream_info(client, target, stream)
    if info is None:
        raise JetStreamError(f"stream {stream!r} does not exist at {target.describe()}")
    return int(info["state"]["last_seq"])


async def stream_events(
    client: Client,
    target: Target,
    stream: str,
    subject: str,
    *,
    start_seq: int = 1,
    limit: int = 100_000,
) -> list[Event]:
    """Stored messages on ``subject`` (wildcards allowed) from ``start_seq`` (``stream view``)."""
    events: list[Event] = []
    seq = max(1, start_seq)
    while len(events) < limit:
        reply = await jetstream.request(
            client, target, f"STREAM.MSG.GET.{stream}", {"seq": seq, "next_by_subj": subject}
        )
        error = reply.get("error")
        if error:
            if error.get("err_code") == NO_MESSAGE:
                break
            raise JetStreamError(f"reading {stream} at seq {seq}: {error.get('description')}")
        message = reply["message"]
        data = base64.b64decode(message.get("data") or b"")
        events.append(Event(seq=message["seq"], subject=message["subject"], data=data))
        seq = message["seq"] + 1
    return events


async def count_ids(
    client: Client, target: Target, stream: str, subject: str, ids: Iterable[str], start_seq: int
) -> Counter[str]:
    """How often each of ``ids`` is stored on ``subject`` since ``start_seq`` (0 if never)."""
    wanted = set(ids)
    counts: Counter[str] = Counter({one: 0 for one in wanted})
    for event in await stream_events(client, target, stream, subject, start_seq=start_seq):
        found = event_id(event.data)
        if found in wanted:
            counts[found] += 1
    return counts


async def wait_for_ids(
    client: Client,
    target: Target,
    stream: str,
    subject: str,
    ids: Iterable[str],
    start_seq: int,
    *,
    timeout: float,
    settle: float = 1.0,
) -> Counter[str]:
    """Count until every id arrived (or ``timeout``), then once more after ``settle``.

    Events from a buffered edge arrive asynchronously through the stream source; the
    recount after ``settle`` is what catches a late duplicate.
    """
    ids = list(ids)
    deadline = time.monotonic() + timeout
    while True:
        counts = await count_ids(client, target, stream, subject, ids, start_seq)
        if all(counts[one] for one in ids) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(settle)
    return await count_ids(client, target, stream, subject, ids, start_seq)


@dataclass
class LiveSubscription:
    """Messages a core subscription received (the runbook's ``nats sub``)."""

    subject: str
    messages: list[Msg] = field(default_factory=list)

    def ids(self) -> Counter[str]:
        return Counter(i for m in self.messages if (i := event_id(m.data)) is not None)


@asynccontextmanager
async def live_subscription(
    target: Target, subject: str, *, peers: Iterable[Target] = (), timeout: float = 10.0
) -> AsyncIterator[LiveSubscription]:
    """Subscribe to ``subject`` at ``target`` and wait until every server in ``peers`` knows.

    Interest travels to the other cluster members asynchronously; a marker subscription
    made right after ``subject`` is pinged from each peer, and once the ping arrives that
    peer (which learns subscriptions in order) also routes ``subject`` to us.
    """
    live = LiveSubscription(subject)

    async def collect(msg: Msg) -> None:
        live.messages.append(msg)

    async with connected(target) as client:
        await client.subscribe(subject, cb=collect)
        marker = client.new_inbox()
        arrived = asyncio.Event()

        async def on_marker(_msg: Msg) -> None:
            arrived.set()

        await client.subscribe(marker, cb=on_marker)
        await client.flush(timeout=timeout)
        for peer in peers:
            async with connected(peer) as other:
                await _ping_until(other, marker, arrived, timeout)
        yield live


async def _ping_until(client: Client, subject: str, arrived: asyncio.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    arrived.clear()
    while not arrived.is_set():
        if time.monotonic() >= deadline:
            raise JetStreamError(f"subscription interest did not reach a peer within {timeout}s")
        await client.publish(subject, b"")
        await client.flush(timeout=timeout)
        try:
            await asyncio.wait_for(arrived.wait(), 0.2)
        except TimeoutError:
            continue


async def server_ping(
    client: Client, subject: str = JSZ_PING, *, expected: int | None = None, timeout: float = 3.0
) -> list[dict[str, Any]]:
    """Every server's answer to a system-account ping (connect as the admin user).

    Waits for ``expected`` answers or ``timeout``, whichever comes first; servers of
    edges answer over their SYS leafnode remote.
    """
    inbox = client.new_inbox()
    replies: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def collect(msg: Msg) -> None:
        replies.append(json.loads(msg.data))
        if expected is not None and len(replies) >= expected:
            enough.set()

    sub = await client.subscribe(inbox, cb=collect)
    await client.publish(subject, b"{}", reply=inbox)
    await client.flush(timeout=timeout)
    with suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), timeout)
    await sub.unsubscribe()
    return sorted(replies, key=lambda r: r.get("server", {}).get("name", ""))
