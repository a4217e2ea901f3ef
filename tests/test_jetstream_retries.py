"""JetStream requests ride out a fresh cluster's first seconds instead of failing `pulumi up`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import pytest

from components import jetstream
from components.jetstream import JetStreamError, Target

NO_PEERS = {"error": {"code": 503, "err_code": 10005, "description": "no suitable peers"}}
CREATED = {"type": "io.nats.jetstream.api.v1.stream_create_response", "config": {"name": "ops"}}


@dataclass
class Reply:
    data: bytes


class ScriptedClient:
    """Answers JetStream requests from a script, recording what was sent."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> Reply:
        self.sent.append((subject, json.loads(payload) if payload else {}))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Reply(json.dumps(answer).encode())


def call(client: ScriptedClient, timeout: float = 5.0) -> dict[str, Any] | None:
    target = Target(("nats://127.0.0.1:4222",), "app", "pw", timeout=timeout)
    coroutine = jetstream.api(client, target, "STREAM.CREATE.ops", {"num_replicas": 3.0})  # type: ignore[arg-type]
    return asyncio.run(coroutine)


def test_placement_pending_after_boot_is_retried_until_it_succeeds() -> None:
    client = ScriptedClient([NO_PEERS, NO_PEERS, CREATED])
    assert call(client) == CREATED
    assert len(client.sent) == 3


def test_placement_that_never_succeeds_names_the_fix() -> None:
    client = ScriptedClient([NO_PEERS])
    with pytest.raises(JetStreamError, match="restart that server or pod"):
        call(client, timeout=1.0)


def test_numbers_go_on_the_wire_as_ints() -> None:
    client = ScriptedClient([CREATED])
    call(client)
    assert client.sent[0][1] == {"num_replicas": 3}
