"""Shared fixtures of the local-mode tests: stack files and booted topologies.

Every topology booted here is stopped in teardown, by pid, whatever the test did; the
fixtures are only instantiated by tests that ask for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.stacks import StackSet, load_stacks
from sandbox.topology import Topology

REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_STACKS = REPO_ROOT / "stacks"
CHART_PATH = Path("/work/shared/charts/nats-1.2.4.tgz")
BOOT_TIMEOUT = 60.0


def run(coroutine: Any) -> Any:
    """Run one coroutine on a fresh event loop (no loop is shared between tests)."""
    return asyncio.run(coroutine)


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.2)


def write_stacks(
    directory: Path,
    *,
    hub_replicas: int = 1,
    edges: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Small stack files like the repo's: a hub and edges ``{stack: edge settings}``.

    An edge's settings are its ``ops-nats:edge`` mapping; ``buffer.enabled`` makes the
    hub list it as buffered. ``serverName`` defaults to the stack name, as in Pulumi.
    """
    edges = edges if edges is not None else {"edge-a": {"buffered": True}, "edge-b": {}}
    directory.mkdir(parents=True, exist_ok=True)
    listed = []
    for stack, options in edges.items():
        options = dict(options)
        buffered = options.pop("buffered", False)
        edge: dict[str, Any] = {"hubStack": "organization/ops-nats/hub", **options}
        if buffered:
            edge["publicHost"] = f"{stack}.example.internal"
            edge["buffer"] = {"enabled": True, "storeSize": "256Mi", "maxBytes": "128Mi"}
        name = edge.get("serverName", stack)
        if name not in [e if isinstance(e, str) else e["name"] for e in listed]:
            listed.append({"name": name, "buffered": True} if buffered else name)
        _write(directory / f"Pulumi.{stack}.yaml", {"ops-nats:role": "edge", "ops-nats:edge": edge})
    hub = {
        "ops-nats:role": "hub",
        "ops-nats:hub": {
            "publicHost": "hub.example.internal",
            "replicas": hub_replicas,
            "jetstream": {"memoryStore": "64Mi", "fileStore": {"enabled": True, "size": "1Gi"}},
            "edges": listed,
        },
        "ops-nats:stream": {"replicas": 1 if hub_replicas < 3 else 3},
    }
    _write(directory / "Pulumi.hub.yaml", hub)
    return directory


def _write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"config": config}, sort_keys=False))


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Callable[..., Topology]]:
    """``boot(stacks, **kwargs)`` boots a topology in this test's tmp dir; always torn down."""
    booted: list[Topology] = []

    def _boot(stacks: StackSet, **kwargs: Any) -> Topology:
        kwargs.setdefault("timeout", BOOT_TIMEOUT)
        state_dir = kwargs.pop("state_dir", tmp_path / f"state-{len(booted)}")
        topology = Topology.boot(stacks, state_dir, **kwargs)
        booted.append(topology)
        return topology

    yield _boot
    for topology in booted:
        topology.down()


@pytest.fixture(scope="session")
def production_topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """The repo's own stack files: hub of 3, edge-a (buffered), edge-b (plain).

    Shared by tests that do not stop servers; each counts only the events it published.
    """
    stacks = load_stacks(REPO_STACKS, ["hub", "edge-a", "edge-b"])
    topology = Topology.boot(stacks, tmp_path_factory.mktemp("production"), timeout=BOOT_TIMEOUT)
    try:
        yield topology
    finally:
        topology.down()


@pytest.fixture
def small_stacks(tmp_path: Path) -> Path:
    """A one-server hub with edge-a (buffered) and edge-b (plain): quick to boot."""
    return write_stacks(tmp_path / "stacks")


def servers_running_from(state_dir: Path) -> list[int]:
    """Pids of nats-server processes whose config lives under ``state_dir`` (reads /proc)."""
    found = []
    marker = str(state_dir.resolve()).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        zombie = stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
        if b"nats-server" in args and marker in args and not zombie:
            found.append(int(entry.name))
    return found


@dataclass
class ExtraServer:
    """A nats-server started beside a topology (not in its plan), stopped by pid."""

    http_port: int
    log: Path
    pid: int
    conf: Path

    def stop(self) -> None:
        from sandbox import processes

        processes.stop(self.pid, self.conf)


@pytest.fixture
def extra_server(tmp_path: Path) -> Iterator[Callable[..., ExtraServer]]:
    """``extra_server(topology, like, env)`` starts one more nats-server outside the plan.

    It gets the config of server ``like`` (new loopback ports, its own files) and that
    server's environment updated with ``env``. Stopped in teardown.
    """
    from sandbox import processes, server_config
    from sandbox.plan import server_env

    started: list[ExtraServer] = []

    def _start(topology: Topology, like: str, env: dict[str, str]) -> ExtraServer:
        template = topology.plan.server(like)
        directory = tmp_path / f"extra-{len(started)}"
        directory.mkdir()
        client, http, leaf = processes.free_ports(3)
        local = server_config.LocalAddresses(
            client_port=client,
            http_port=http,
            leafnode_port=leaf,
            store_dir=str(directory / "jetstream"),
            pid_file=str(directory / "nats.pid"),
        )
        conf = directory / "nats.conf"
        config = server_config.localize(topology.plan.configs[like], local)
        conf.write_text(server_config.render_text(config))
        stacks = {template.stack, topology.plan.hub_stack}
        full_env = server_env(topology.plan, template, {s: topology.passwords(s) for s in stacks})
        log = directory / "nats.log"
        child = processes.start_server(
            processes.nats_server_binary(), conf, log, {**full_env, **env}
        )
        started.append(ExtraServer(http_port=http, log=log, pid=child.pid, conf=conf))
        return started[-1]

    yield _start
    for server in started:
        server.stop()


def log_shows(log: Path, text: str, timeout: float = 20.0) -> None:
    wait_until(lambda: text in log.read_text(errors="replace"), f"{text!r} in {log}", timeout)
