"""Measurement primitives of ``python -m sandbox bench``: one path, one figure, plain data.

Each function takes where to connect (an ``Endpoint``), what to send (subject, count,
payload size, in-flight window) and returns a frozen dataclass of figures. Nothing here
knows the topology: ``sandbox/bench.py`` decides which endpoint is "direct" and which
is "through the edge", interleaves the rounds and takes medians.

Every loop is bounded twice, by a count and by a deadline: a lost ack, a dead leafnode
or a stream that never fills ends a measurement with ``complete=False`` and the counts
it reached, never with a hang.

JetStream publishes are made on core NATS (a PUB with a reply inbox, what every client's
"publish async" does on the wire) rather than with ``js.publish_async``: nats-py 2.16's
futures have no ack deadline (one lost ack stalls the window forever) and parse each
ack into a ``PubAck`` object, which on a 2-core machine costs the servers CPU that the
figures are meant to show.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

MB = 1_000_000  # MB/s as `nats bench` prints it (decimal megabytes)
DEFAULT_API_PREFIX = "$JS.API"
_POLL_SECONDS = 0.02  # stream-count polling: fine enough for rates of ~100k msgs/s


class MeasureError(RuntimeError):
    """A measurement could not start (no server, refused credentials, no stream)."""


@dataclass(frozen=True)
class Endpoint:
    """A client URL and the user to log in as (``repr`` hides the password)."""

    url: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    label: str = ""  # for messages: "hub nats-0", "edge edge-b"

    def describe(self) -> str:
        return f"{self.label} ({self.url})" if self.label else self.url


@dataclass(frozen=True)
class FanoutFigures:
    """Runbook bench (`nats bench SUBJ --pub 1 --sub N`): one publisher, N subscribers."""

    count: int  # messages published
    payload_size: int
    subscribers: int
    received: int  # summed over subscribers; complete when count * subscribers
    pub_seconds: float
    seconds: float  # until every subscriber had every message (or the deadline)
    pub_msgs_per_sec: float
    pub_mb_per_sec: float
    sub_msgs_per_sec: float  # aggregate over subscribers, as `nats bench` reports it
    sub_mb_per_sec: float
    complete: bool


@dataclass(frozen=True)
class IngestFigures:
    """Publishes into a stream, acked (bounded window) or fire-and-forget."""

    mode: str  # "acked" or "fire-and-forget"
    count: int
    payload_size: int
    window: int  # in-flight acks allowed (0 for fire-and-forget)
    sent: int
    stored: int  # acked publishes, or events the stream gained
    errors: int  # negative acks (JetStream error replies, no responders)
    seconds: float  # first publish -> last ack (or stream holding all)
    msgs_per_sec: float
    mb_per_sec: float
    complete: bool
    first_error: str | None = None


@dataclass(frozen=True)
class LatencyFigures:
    """Round trip of a synchronous acked publish, in milliseconds."""

    count: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    complete: bool


@dataclass(frozen=True)
class StreamState:
    messages: int
    bytes: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class WaitFigures:
    """A stream growing from ``start_seq`` towards ``target_seq`` (e.g. a backlog draining).

    ``seconds`` counts from the caller's ``since`` (e.g. the hub servers starting again)
    to the last event; ``first_progress_seconds`` is when the first new event showed.
    ``msgs_per_sec`` is the drain rate proper: events from the last poll that saw none
    (or, failing that, the first that saw some) to the end, over that time; restart and
    reconnect delays are excluded (they are in ``seconds`` and ``overall_msgs_per_sec``).
    It is NaN when a single poll saw the whole backlog arrive.
    """

    start_seq: int
    target_seq: int
    reached_seq: int
    events: int
    seconds: float
    first_progress_seconds: float | None
    msgs_per_sec: float
    overall_msgs_per_sec: float
    complete: bool


def make_payload(size: int) -> bytes:
    """An ops event of exactly ``size`` bytes: JSON like a CRD status change, padded.

    Real events are JSON and compress well; random bytes would misrepresent what
    leafnode compression does with them.
    """
    head = json.dumps(
        {
            "kind": "PipelineRun",
            "cluster": "edge-b",
            "namespace": "ci",
            "name": "build-ops-nats-0042",
            "status": {"conditions": [{"type": "Succeeded", "status": "Unknown"}]},
            "pad": "",
        },
        separators=(",", ":"),
    ).encode()
    if size <= 0:
        return b""
    filler = b"reason=Running;message=Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 0;"
    body = head[:-2]  # cut `"}` off the empty pad string: the pad goes inside it
    while len(body) + 2 < size:
        body += filler
    return (body[: max(0, size - 2)] + b'"}')[:size]


@asynccontextmanager
async def connection(
    endpoint: Endpoint, *, name: str, timeout: float = 5.0
) -> AsyncIterator[Client]:
    """One connection that fails fast: a measurement never waits on reconnects."""
    try:
        client = await nats.connect(
            servers=[endpoint.url],
            user=endpoint.user,
            password=endpoint.password,
            name=name,
            connect_timeout=max(1, math.ceil(timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            # Big enough that a burst of fire-and-forget publishes is buffered, not refused.
            pending_size=32 * 1024 * 1024,
            error_cb=_ignore_error,
        )
    except Exception as error:  # nats-py raises several unrelated types here
        raise MeasureError(f"cannot connect to {endpoint.describe()}: {error!r}") from error
    try:
        yield client
    finally:
        await client.close()


async def fanout(
    endpoint: Endpoint,
    subject: str,
    *,
    count: int,
    payload_size: int,
    subscribers: int = 10,
    timeout: float = 30.0,
) -> FanoutFigures:
    """Publish ``count`` messages to ``subscribers`` separate subscriber connections.

    Like ``nats bench``: each subscriber has its own connection; the publisher's rate
    is publish-and-flush time, the subscribers' rate is aggregate messages over the time
    until the last one had everything.
    """
    payload = make_payload(payload_size)
    expected = count * subscribers
    received = 0
    all_in = asyncio.Event()

    async def on_msg(_msg: Msg) -> None:
        nonlocal received
        received += 1
        if received >= expected:
            all_in.set()

    deadline = time.monotonic() + timeout
    async with _many(endpoint, subscribers, name="bench-sub") as subs:
        for client in subs:
            # No per-subscription limit on the client side: the server's slow-consumer
            # policy is the one being measured, not nats-py's pending queue.
            await client.subscribe(
                subject, cb=on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
            )
            await client.flush(timeout=max(1, math.ceil(_left(deadline))))
        async with connection(endpoint, name="bench-pub") as pub:
            await asyncio.sleep(0.05)  # subscription interest reaches every cluster member
            start = time.perf_counter()
            for _ in range(count):
                await pub.publish(subject, payload)
            await pub.flush(timeout=max(1, math.ceil(_left(deadline))))
            pub_seconds = time.perf_counter() - start
            with suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), timeout=_left(deadline))
            seconds = time.perf_counter() - start
    complete = received >= expected
    return FanoutFigures(
        count=count,
        payload_size=payload_size,
        subscribers=subscribers,
        received=received,
        pub_seconds=pub_seconds,
        seconds=seconds,
        pub_msgs_per_sec=_rate(count, pub_seconds),
        pub_mb_per_sec=_rate(count * payload_size, pub_seconds) / MB,
        sub_msgs_per_sec=_rate(received, seconds),
        sub_mb_per_sec=_rate(received * payload_size, seconds) / MB,
        complete=complete,
    )


async def acked_ingest(
    endpoint: Endpoint,
    subject: str,
    *,
    count: int,
    payload_size: int,
    window: int,
    timeout: float = 60.0,
) -> IngestFigures:
    """``count`` JetStream publishes with at most ``window`` acks outstanding.

    Each publish carries its own reply subject under one wildcard inbox subscription;
    an ack is a PubAck JSON, anything else (an ``{"error":...}`` reply, a 503 no
    responders status) counts as an error. At the deadline the unanswered are neither.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    payload = make_payload(payload_size)
    acked = errors = in_flight = 0
    first_error: str | None = None
    slot = asyncio.Event()
    all_in = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal acked, errors, in_flight, first_error
        in_flight -= 1
        if _is_ack(msg):
            acked += 1
        else:
            errors += 1
            first_error = first_error or _describe_nak(msg)
        if in_flight < window:
            slot.set()
        if acked + errors >= count:
            all_in.set()

    deadline = time.monotonic() + timeout
    sent = 0
    async with connection(endpoint, name="bench-acked") as client:
        inbox = client.new_inbox()
        await client.subscribe(
            f"{inbox}.*", cb=on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        await client.flush(timeout=max(1, math.ceil(_left(deadline))))
        start = time.perf_counter()
        while sent < count:
            if in_flight >= window:
                slot.clear()
                try:
                    await asyncio.wait_for(slot.wait(), timeout=_left(deadline))
                except TimeoutError:
                    break  # the window never reopened: acks are lost, stop sending
                continue
            in_flight += 1
            await client.publish(subject, payload, reply=f"{inbox}.{sent}")
            sent += 1
        if sent:
            with suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), timeout=_left(deadline))
        seconds = time.perf_counter() - start
        stored, failed = acked, errors  # a late ack arriving during close must not count
    return IngestFigures(
        mode="acked",
        count=count,
        payload_size=payload_size,
        window=window,
        sent=sent,
        stored=stored,
        errors=failed,
        seconds=seconds,
        msgs_per_sec=_rate(stored, seconds),
        mb_per_sec=_rate(stored * payload_size, seconds) / MB,
        complete=stored == count,
        first_error=first_error,
    )


def combine(parts: Sequence[IngestFigures]) -> IngestFigures:
    """Several runs of one path as one: counts and seconds add up, rates are recomputed."""
    if not parts:
        raise ValueError("nothing to combine")
    stored = sum(p.stored for p in parts)
    seconds = sum(p.seconds for p in parts)
    first = parts[0]
    return IngestFigures(
        mode=first.mode,
        count=sum(p.count for p in parts),
        payload_size=first.payload_size,
        window=first.window,
        sent=sum(p.sent for p in parts),
        stored=stored,
        errors=sum(p.errors for p in parts),
        seconds=seconds,
        msgs_per_sec=_rate(stored, seconds),
        mb_per_sec=_rate(stored * first.payload_size, seconds) / MB,
        complete=all(p.complete for p in parts),
        first_error=next((p.first_error for p in parts if p.first_error), None),
    )


async def fire_and_forget(
    endpoint: Endpoint,
    stream_endpoint: Endpoint,
    stream: str,
    subject: str,
    *,
    count: int,
    payload_size: int,
    timeout: float = 60.0,
    api_prefix: str = DEFAULT_API_PREFIX,
) -> IngestFigures:
    """Core-NATS publishes without acks, timed until the stream holds all of them.

    The stream is read through ``stream_endpoint`` (the hub): the publisher may sit on
    an edge that has no JetStream API of its own.
    """
    payload = make_payload(payload_size)
    deadline = time.monotonic() + timeout
    async with connection(stream_endpoint, name="bench-stream-watch") as watcher:
        before = await _state(watcher, stream, api_prefix, deadline)
        target = before.last_seq + count
        async with connection(endpoint, name="bench-fire") as client:
            start = time.perf_counter()
            for _ in range(count):
                await client.publish(subject, payload)
            await client.flush(timeout=max(1, math.ceil(_left(deadline))))
            reached = await _poll_until(watcher, stream, api_prefix, target, deadline)
            seconds = time.perf_counter() - start
    stored = reached.last_seq - before.last_seq
    return IngestFigures(
        mode="fire-and-forget",
        count=count,
        payload_size=payload_size,
        window=0,
        sent=count,
        stored=stored,
        errors=0,
        seconds=seconds,
        msgs_per_sec=_rate(stored, seconds),
        mb_per_sec=_rate(stored * payload_size, seconds) / MB,
        complete=stored >= count,
    )


async def ack_latency(
    endpoint: Endpoint,
    subject: str,
    *,
    count: int,
    payload_size: int,
    warmup: int = 50,
    request_timeout: float = 2.0,
    timeout: float = 60.0,
) -> LatencyFigures:
    """``count`` synchronous acked publishes, one at a time; percentiles of the round trip.

    ``warmup`` requests first (not recorded): the first ones pay for interest
    propagation and the server's first stream lookups.
    """
    payload = make_payload(payload_size)
    samples: list[float] = []
    errors = 0
    deadline = time.monotonic() + timeout
    async with connection(endpoint, name="bench-latency") as client:
        for index in range(warmup + count):
            if time.monotonic() >= deadline:
                break
            start = time.perf_counter_ns()
            try:
                reply = await client.request(subject, payload, timeout=request_timeout)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                errors += index >= warmup
                continue
            elapsed_ms = (time.perf_counter_ns() - start) / 1e6
            if index < warmup:
                continue
            if _is_ack(reply):
                samples.append(elapsed_ms)
            else:
                errors += 1
    return LatencyFigures(
        count=len(samples),
        errors=errors,
        p50_ms=percentile(samples, 50),
        p90_ms=percentile(samples, 90),
        p99_ms=percentile(samples, 99),
        max_ms=max(samples, default=math.nan),
        mean_ms=sum(samples) / len(samples) if samples else math.nan,
        complete=len(samples) == count,
    )


async def stream_state(
    endpoint: Endpoint, stream: str, *, api_prefix: str = DEFAULT_API_PREFIX, timeout: float = 10.0
) -> StreamState:
    """The stream's counts and sequences (``$JS.API.STREAM.INFO.<stream>``)."""
    async with connection(endpoint, name="bench-stream-info") as client:
        return await _state(client, stream, api_prefix, time.monotonic() + timeout)


async def place_stream_leader(
    endpoint: Endpoint,
    stream: str,
    *,
    avoid: str | None = None,
    prefer: str | None = None,
    attempts: int = 12,
    api_prefix: str = DEFAULT_API_PREFIX,
    timeout: float = 60.0,
) -> str | None:
    """Step the stream leader down until it sits where wanted; returns the leader's name.

    Where the leader sits decides whether a publish crosses a route inside the hub, which
    moves every ingest figure by 10-30 %; an election puts it anywhere, so figures of two
    boots (or two rounds around a hub restart) compare only with the leader placed alike.
    A stream without replicas keeps its one server. Bounded by ``attempts`` and ``timeout``.
    """
    deadline = time.monotonic() + timeout
    leader: str | None = None

    def placed(name: str | None) -> bool:
        return bool(name) and name != avoid and (prefer is None or name == prefer)

    async with connection(endpoint, name="bench-leader") as client:
        for _ in range(attempts):
            info = await _api(client, f"{api_prefix}.STREAM.INFO.{stream}", deadline)
            leader = (info.get("cluster") or {}).get("leader")
            if placed(leader) or info["config"].get("num_replicas", 1) < 2:
                return leader
            await _api(client, f"{api_prefix}.STREAM.LEADER.STEPDOWN.{stream}", deadline)
            # Wait for the next election to finish (a leader other than the one that left).
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                elected = await _leader(client, stream, api_prefix, deadline)
                if elected and elected != leader:
                    break
            if time.monotonic() >= deadline:
                break
        return await _leader(client, stream, api_prefix, deadline)


async def _leader(client: Client, stream: str, api_prefix: str, deadline: float) -> str | None:
    try:
        info = await _api(client, f"{api_prefix}.STREAM.INFO.{stream}", deadline)
    except MeasureError:
        return None  # mid-election: no leader answers yet
    leader = (info.get("cluster") or {}).get("leader")
    return str(leader) if leader else None


async def purge_stream(
    endpoint: Endpoint, stream: str, *, api_prefix: str = DEFAULT_API_PREFIX, timeout: float = 10.0
) -> int:
    """Empty the stream (sequences keep counting); returns how many events went."""
    async with connection(endpoint, name="bench-purge") as client:
        response = await _api(
            client, f"{api_prefix}.STREAM.PURGE.{stream}", time.monotonic() + timeout
        )
    return int(response.get("purged", 0))


async def wait_for_stream(
    endpoint: Endpoint,
    stream: str,
    *,
    start_seq: int,
    target_seq: int,
    since: float,
    timeout: float = 120.0,
    api_prefix: str = DEFAULT_API_PREFIX,
) -> WaitFigures:
    """Poll the stream until its last sequence reaches ``target_seq`` (bounded).

    ``since`` is a ``time.perf_counter()`` value the caller took when the clock should
    start (e.g. when the hub servers were started again); ``start_seq`` is the last
    sequence before the wait, so the backlog's arrival can be told apart. The server may
    still be down when this starts: connecting is retried until the deadline, and a
    dropped connection is made again.
    """
    deadline = time.monotonic() + timeout
    quiet: tuple[float, int] | None = None  # last poll that saw no new event yet
    first: tuple[float, int] | None = None  # first poll that saw progress
    base: tuple[float, int] | None = None  # where the rate is counted from
    last = start_seq
    now = time.perf_counter()
    client: Client | None = None
    try:
        while True:
            if client is None or not client.is_connected:
                client = await _try_connect(endpoint, "bench-drain-watch", client)
            seen = False
            if client is not None:
                try:
                    # A short bound per poll: a hub still electing leaders is polled again.
                    poll_deadline = min(deadline, time.monotonic() + 1.0)
                    last = (await _state(client, stream, api_prefix, poll_deadline)).last_seq
                    seen = True
                except (MeasureError, nats.errors.Error):
                    pass
            now = time.perf_counter()
            if seen and first is None:
                if last > start_seq:
                    first = (now, last)
                    # The flow began after the last quiet poll: counting from there gives
                    # a rate that is, if anything, low by one poll interval.
                    base = quiet or first
                else:
                    quiet = (now, last)
            if last >= target_seq or time.monotonic() >= deadline:
                break
            await asyncio.sleep(_POLL_SECONDS)
    finally:
        if client is not None:
            await client.close()
    events = max(0, last - start_seq)
    flow = _rate(last - base[1], now - base[0]) if base is not None else math.nan
    return WaitFigures(
        start_seq=start_seq,
        target_seq=target_seq,
        reached_seq=last,
        events=events,
        seconds=now - since,
        first_progress_seconds=first[0] - since if first is not None else None,
        msgs_per_sec=flow,
        overall_msgs_per_sec=_rate(events, now - since),
        complete=last >= target_seq,
    )


async def _try_connect(endpoint: Endpoint, name: str, old: Client | None) -> Client | None:
    """A fresh connection, or None while the server is not accepting them."""
    if old is not None:
        with suppress(Exception):  # already broken; closing is best effort
            await old.close()
    try:
        client = await nats.connect(
            servers=[endpoint.url],
            user=endpoint.user,
            password=endpoint.password,
            name=name,
            connect_timeout=1,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=_ignore_error,
        )
    except Exception:  # refused while the server restarts: the caller polls again
        await asyncio.sleep(0.1)
        return None
    return client


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 is a latency someone really had)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median, ignoring NaN (a failed round must not poison the others)."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return math.nan
    middle = len(finite) // 2
    if len(finite) % 2:
        return finite[middle]
    return (finite[middle - 1] + finite[middle]) / 2


def _is_ack(msg: Msg) -> bool:
    # A PubAck is `{"stream":..,"seq":..}`; errors are `{"error":..}`, no responders an
    # empty 503 status message. Byte checks keep the ack path cheap (no JSON parse).
    data = msg.data
    return bool(data) and b'"seq"' in data and b'"error"' not in data


def _describe_nak(msg: Msg) -> str:
    if not msg.data:
        status = (msg.headers or {}).get("Status", "")
        return f"status {status} (no stream answered: is the subject in a stream?)"
    try:
        error = json.loads(msg.data).get("error", {})
    except ValueError:
        return msg.data[:200].decode(errors="replace")
    return f"{error.get('description')} (code {error.get('err_code')})"


async def _api(client: Client, subject: str, deadline: float) -> dict[str, Any]:
    """One JetStream API request, retried while JetStream elects leaders (bounded)."""
    while True:
        try:
            reply = await client.request(subject, b"", timeout=min(2.0, max(0.1, _left(deadline))))
            break
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            if time.monotonic() >= deadline:
                raise MeasureError(f"no JetStream answer to {subject}: {error!r}") from None
            await asyncio.sleep(0.1)
    response: dict[str, Any] = json.loads(reply.data)
    if "error" in response:
        error = response["error"]
        raise MeasureError(
            f"{subject} refused: {error.get('description')} (code {error.get('err_code')})"
        )
    return response


async def _state(client: Client, stream: str, api_prefix: str, deadline: float) -> StreamState:
    info = await _api(client, f"{api_prefix}.STREAM.INFO.{stream}", deadline)
    state = info["state"]
    return StreamState(
        messages=int(state.get("messages", 0)),
        bytes=int(state.get("bytes", 0)),
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
    )


async def _poll_until(
    client: Client, stream: str, api_prefix: str, target_seq: int, deadline: float
) -> StreamState:
    state = await _state(client, stream, api_prefix, deadline)
    while state.last_seq < target_seq and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_SECONDS)
        state = await _state(client, stream, api_prefix, deadline)
    return state


@asynccontextmanager
async def _many(endpoint: Endpoint, how_many: int, *, name: str) -> AsyncIterator[list[Client]]:
    """``how_many`` connections; all that were opened are closed, whatever fails."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(connection(endpoint, name=f"{name}-{index}"))
            for index in range(how_many)
        ]


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else math.nan


async def _ignore_error(_error: Exception) -> None:
    # Errors surface as counts and `complete=False`; nats-py's default prints a traceback.
    return None
