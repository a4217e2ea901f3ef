"""JetStream stream management over the wire (nats-py, raw ``$JS.API`` JSON).

Used by the stream resource during ``pulumi up`` and by local mode; I/O lives here and
nowhere else. Every wait is bounded and every failure says what to check.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client

STREAM_NOT_FOUND = 10059
NO_SUITABLE_PEERS = 10005


class JetStreamError(RuntimeError):
    """A JetStream request failed; the message is for the operator."""


@dataclass(frozen=True)
class Target:
    """Where and as whom to manage streams. ``domain`` selects a leafnode's JetStream."""

    servers: tuple[str, ...]
    user: str
    password: str
    domain: str | None = None
    timeout: float = 300.0  # total time allowed to reach a server

    @property
    def api_prefix(self) -> str:
        return f"$JS.{self.domain}.API" if self.domain else "$JS.API"

    def describe(self) -> str:
        where = ", ".join(self.servers)
        return f"{where} as {self.user}" + (f" (domain {self.domain})" if self.domain else "")


@asynccontextmanager
async def connected(target: Target) -> AsyncIterator[Client]:
    """A connection, retried until ``target.timeout``: a fresh hub takes a while to come up."""
    deadline = time.monotonic() + target.timeout
    last_error: Exception | None = None
    attempt_errors: list[Exception] = []

    async def remember(error: Exception) -> None:
        # failures are retried and reported below, not dumped
        attempt_errors.append(error)

    while True:
        attempt_errors.clear()
        try:
            # nats-py 2.x retries a refused server forever when max_reconnect_attempts is 0;
            # only wait_for bounds the attempt.
            client = await asyncio.wait_for(
                nats.connect(
                    servers=list(target.servers),
                    user=target.user,
                    password=target.password,
                    connect_timeout=min(5.0, max(0.5, deadline - time.monotonic())),
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                    error_cb=remember,
                ),
                timeout=max(0.5, deadline - time.monotonic()),
            )
            break
        except Exception as error:  # nats-py raises several unrelated types here
            timed_out = isinstance(error, asyncio.TimeoutError) and attempt_errors
            last_error = attempt_errors[-1] if timed_out else error
            if "Authorization" in str(error) or "authorization" in str(error):
                raise JetStreamError(
                    f"NATS at {target.describe()} refused the credentials: {error}; "
                    "check that the stack's password output matches the running servers "
                    "(pods roll when credentialsRotation changes)"
                ) from error
        if time.monotonic() >= deadline:
            raise JetStreamError(
                f"could not reach NATS at {target.describe()} within {target.timeout:.0f}s "
                f"(last error: {last_error!r}); check publicHost, the client NodePort and "
                "that the servers are running"
            )
        await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    try:
        yield client
    finally:
        await client.close()


async def api(
    client: Client,
    target: Target,
    verb: str,
    body: dict[str, Any] | None = None,
    *,
    allow_missing: bool = False,
) -> dict[str, Any] | None:
    """One JetStream API request; returns None for a missing stream if ``allow_missing``."""
    response = await request(client, target, verb, body)
    error = response.get("error")
    if error:
        if allow_missing and error.get("err_code") == STREAM_NOT_FOUND:
            return None
        if error.get("err_code") == NO_SUITABLE_PEERS:
            raise JetStreamError(
                f"JetStream refused {verb} at {target.describe()}: {error.get('description')}; "
                "a server is missing from the JetStream cluster (`nats server report "
                "jetstream` as admin shows which): restart that server or pod and retry"
            )
        raise JetStreamError(
            f"JetStream refused {verb} at {target.describe()}: {error.get('description')} "
            f"(code {error.get('err_code')})"
        )
    return response


async def request(
    client: Client, target: Target, verb: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The API's JSON reply, error replies included.

    Silence is waited out for ``target.timeout`` (60 s at most): right after servers
    (re)start, the meta leader or the stream's leader is still being elected and nobody
    answers; a pending replica placement is retried as well.
    """
    subject = f"{target.api_prefix}.{verb}"
    payload = json.dumps(wire_numbers(body)).encode() if body is not None else b""
    deadline = time.monotonic() + min(target.timeout, 60.0)
    while True:
        try:
            reply = await client.request(subject, payload, timeout=5.0)
            if not _placement_pending(reply.data) or time.monotonic() >= deadline:
                return json.loads(reply.data)
        except nats.errors.NoRespondersError:
            if time.monotonic() >= deadline:
                raise JetStreamError(
                    f"no JetStream answered {subject} at {target.describe()}; check that "
                    "JetStream is enabled for the account (and the domain, for an edge)"
                ) from None
        except nats.errors.TimeoutError:
            if time.monotonic() >= deadline:
                raise JetStreamError(
                    f"JetStream did not answer {subject} at {target.describe()} in time; "
                    "check `server report jetstream` for a meta leader"
                ) from None
        await asyncio.sleep(0.5)


def _placement_pending(data: bytes) -> bool:
    # Right after the servers start, the meta leader may not yet have heard every
    # server's resources; a replicated stream's placement succeeds a moment later.
    try:
        error = json.loads(data).get("error") or {}
    except (ValueError, AttributeError):
        return False
    return error.get("err_code") == NO_SUITABLE_PEERS


def wire_numbers(value: Any) -> Any:
    """Integral floats back to ints, recursively.

    Inputs reach a dynamic provider through protobuf Structs, where every number is a
    float; the JetStream API (Go) refuses ``3.0`` for an int field as invalid JSON.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: wire_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire_numbers(v) for v in value]
    return value


async def stream_info(target: Target, name: str) -> dict[str, Any] | None:
    """The live stream (config and state), or None when it does not exist."""
    async with connected(target) as client:
        return await api(client, target, f"STREAM.INFO.{name}", allow_missing=True)


async def create_stream(target: Target, config: dict[str, Any]) -> dict[str, Any]:
    """Create the stream, or converge an existing identical one (creation is idempotent)."""
    async with connected(target) as client:
        name = config["name"]
        existing = await api(client, target, f"STREAM.INFO.{name}", allow_missing=True)
        verb = "STREAM.UPDATE" if existing else "STREAM.CREATE"
        response = await api(client, target, f"{verb}.{name}", config)
        assert response is not None
        return response


async def update_stream(target: Target, config: dict[str, Any]) -> dict[str, Any]:
    async with connected(target) as client:
        response = await api(client, target, f"STREAM.UPDATE.{config['name']}", config)
        assert response is not None
        return response


async def delete_stream(target: Target, name: str) -> bool:
    """Delete the stream; False if it was already gone."""
    async with connected(target) as client:
        response = await api(client, target, f"STREAM.DELETE.{name}", allow_missing=True)
        return response is not None


def run(coroutine: Any) -> Any:
    """Run one coroutine to completion on a fresh loop (dynamic providers are synchronous)."""
    return asyncio.run(coroutine)
