"""Boot, inspect and stop the local topology: the hub cluster and its leafnode edges.

Module API (used by the CLI, the tests and the ``outage``/``bench`` commands)::

    stacks = load_stacks(Path("stacks"), ["hub", "edge-a", "edge-b"])   # sandbox.stacks
    topo = Topology.boot(stacks, state_dir)     # servers up, leafs connected, streams made
    topo = Topology.attach(state_dir)           # the topology another process booted
    topo.plan.hub_servers / .edge_servers / .edges / .server(name) / .edge_server(edge)
    topo.stop_server("nats-1"); topo.start_server("nats-1")   # one server, by pid
    topo.stop_hub(); topo.start_hub()           # all hub servers (an outage)
    topo.target("edge-a-nats-0", "app")         # components.jetstream.Target for a client
    topo.hub_target("admin")                    # every hub server, as admin (SYS)
    topo.ensure_streams()                       # (re)declare buffer streams and hub stream
    topo.status() -> list[ServerStatus]
    topo.down()                                 # every process it started, by pid

Every wait is bounded; a failure raises ``BootError`` naming the server, its log and the
fix, after stopping whatever this call started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from components import credentials as creds
from components import jetstream
from sandbox import hub_health, monitor, processes
from sandbox import state as state_store
from sandbox.plan import (
    Plan,
    Renderer,
    ServerPlan,
    make_plan,
    mirror_renderer,
    ports_needed,
    server_env,
)
from sandbox.server_config import render_text
from sandbox.stacks import StackSet

User = Literal["app", "admin"]
Progress = Callable[[str], None]

DEFAULT_TIMEOUT = 60.0
_POLL = 0.2
_LOG_LINES = 4  # of each failing server's log in a boot error
# A hub server still unready after this share of the timeout, while a majority is ready,
# is restarted (see sandbox.hub_health): after 10 s of the default 60 s, twice at most.
_STRAGGLER_SHARE = 1 / 6
_USERS = {"app": creds.APP, "admin": creds.ADMIN}
_LEAF_ACCOUNTS = sorted(r.account for r in creds.EDGE_REMOTES)


class BootError(RuntimeError):
    """The topology did not come up; everything this call started has been stopped."""


class NotUp(RuntimeError):
    """No sandbox is running from this state directory."""


@dataclass(frozen=True)
class ServerStatus:
    """One server as ``status`` shows it."""

    name: str
    role: str
    stack: str
    client_url: str
    pid: int | None
    state: str  # running | unhealthy | stopped
    leafnodes: int | None  # leaf connections (edges: its remotes; hub: edges attached)
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "stack": self.stack,
            "client_url": self.client_url,
            "pid": self.pid,
            "state": self.state,
            "leafnodes": self.leafnodes,
            "detail": self.detail,
        }


@dataclass
class Topology:
    """A planned topology and the processes started for it (see the module docstring)."""

    state_dir: Path
    plan: Plan
    pids: dict[str, int] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    progress: Progress | None = None
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _passwords: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def boot(
        cls,
        stacks: StackSet,
        state_dir: Path,
        *,
        base_port: int | None = None,
        render: Renderer = mirror_renderer,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Progress | None = None,
    ) -> Topology:
        """Start every server, wait for routes, JetStream and leafnodes, declare the streams.

        ``base_port`` assigns ports from there upwards (busy ones are an error); by default
        free ports are picked. ``timeout`` bounds each wait. On failure or Ctrl-C every
        process started is stopped before the exception propagates.
        """
        _refuse_if_running(state_dir)
        binary = processes.nats_server_binary()
        ports: Iterator[int] = (
            itertools.count(base_port)
            if base_port is not None
            else iter(processes.free_ports(ports_needed(stacks)))
        )
        state_dir = state_dir.resolve()
        plan = make_plan(stacks, state_dir, ports, render)
        for server in plan.servers:
            processes.check_ports_free(server.ports())
        topology = cls(state_dir=state_dir, plan=plan, timeout=timeout, progress=progress)
        topology._prepare_files()
        try:
            topology._start_all(binary)
            topology.ensure_streams()
        except BaseException:
            topology.down()
            raise
        return topology

    @classmethod
    def attach(cls, state_dir: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Topology:
        """The topology ``up`` started from ``state_dir`` (raises ``NotUp`` if none)."""
        saved = state_store.load_state(state_dir)
        if saved is None:
            raise NotUp(
                f"no sandbox was started from {state_dir}; run `python -m sandbox up` first"
            )
        return cls(state_dir=state_dir, plan=saved.plan, pids=saved.pids, timeout=timeout)

    # ------------------------------------------------------------------ credentials

    def passwords(self, stack: str) -> dict[str, str]:
        """Env var -> password of ``stack`` (read from its 0600 file)."""
        if stack not in self._passwords:
            self._passwords[stack] = state_store.read_passwords(self.state_dir, stack)
        return self._passwords[stack]

    def credentials_file(self, stack: str) -> Path:
        return state_store.credentials_path(self.state_dir, stack)

    def target(
        self, server: str, user: User = "app", *, domain: str | None = None, timeout: float = 10.0
    ) -> jetstream.Target:
        """How to reach ``server``'s client port as its stack's ``app`` or ``admin`` user."""
        plan = self.plan.server(server)
        credential = _USERS[user]
        return jetstream.Target(
            servers=(plan.client_url,),
            user=credential.user,
            password=self.passwords(plan.stack)[credential.env],
            domain=domain,
            timeout=timeout,
        )

    def hub_target(self, user: User = "app", *, timeout: float = 10.0) -> jetstream.Target:
        """Every hub server's client URL (clients fail over), as the hub's ``user``."""
        credential = _USERS[user]
        return jetstream.Target(
            servers=tuple(s.client_url for s in self.plan.hub_servers),
            user=credential.user,
            password=self.passwords(self.plan.hub_stack)[credential.env],
            timeout=timeout,
        )

    # ------------------------------------------------------------------ processes

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        if child is not None:  # started by this process: ask the OS directly
            return child.poll() is None
        pid = self.pids.get(name)
        return pid is not None and processes.is_ours(pid, self.plan.server(name).conf_path)

    def start_server(self, name: str, *, wait: bool = True) -> None:
        """Start one server again (same config, data and ports) and wait until it is ready."""
        server = self.plan.server(name)
        if self.running(name):
            return
        processes.check_ports_free(server.ports())
        self._spawn(processes.nats_server_binary(), server)
        if not wait:
            return
        if server.role == "hub":
            self._wait_hub()
        else:
            self._wait_started([server])
            self._wait_leafs([server])

    def stop_server(self, name: str, *, timeout: float = 10.0) -> bool:
        """Stop one server by pid; False if it was not running."""
        server = self.plan.server(name)
        pid = self.pids.get(name)
        stopped = pid is not None and processes.stop(pid, server.conf_path, timeout=timeout)
        self._forget(name)
        return stopped

    def stop_hub(self, *, timeout: float = 10.0) -> None:
        """Stop every hub server (edges keep running: the outage drill)."""
        self._stop([s.name for s in self.plan.hub_servers], timeout)

    def start_hub(self) -> None:
        """Start the stopped hub servers; wait until the whole hub is ready and the edges joined.

        With every hub server running it only waits (and restarts a lone straggler).
        """
        binary = processes.nats_server_binary()
        hub = [s for s in self.plan.hub_servers if not self.running(s.name)]
        for server in hub:
            processes.check_ports_free(server.ports())
            self._spawn(binary, server)
        self._wait_hub()
        self._wait_leafs([s for s in self.plan.edge_servers if self.running(s.name)])

    def down(self, *, timeout: float = 10.0) -> list[str]:
        """Stop every process this topology started, by pid; returns the names stopped."""
        names = [name for name in self.pids if self.running(name)]
        self._stop(list(self.pids), timeout)
        state_store.clear_state(self.state_dir)
        return names

    def status(self) -> list[ServerStatus]:
        rows = []
        for server in self.plan.servers:
            pid = self.pids.get(server.name)
            if not self.running(server.name):
                rows.append(_status(server, None, "stopped", None))
                continue
            leafs = len(monitor.leafz(server.http_port))
            if monitor.healthy(server.http_port):
                rows.append(_status(server, pid, "running", leafs))
            else:
                detail = monitor.health_error(server.http_port)
                rows.append(_status(server, pid, "unhealthy", leafs, detail))
        return rows

    # ------------------------------------------------------------------ streams

    def ensure_streams(self) -> None:
        """Declare each buffered edge's stream (on the edge, as its app user) and the hub's.

        The buffer stream cannot be declared through the hub: the edge's users are unknown
        there and the leaf-only users cannot log in on a client port.
        """
        for edge, config in self.plan.buffers.items():
            server = self.plan.edge_server(edge)
            if self.running(server.name):
                self._say(f"declaring stream {config['name']!r} on edge {edge}")
                target = self.target(server.name, "app", timeout=self.timeout)
                asyncio.run(jetstream.create_stream(target, config))
        self._say(f"declaring stream {self.plan.stream['name']!r} on the hub")
        # components.jetstream waits out a placement that is pending right after boot.
        asyncio.run(
            jetstream.create_stream(self.hub_target("app", timeout=self.timeout), self.plan.stream)
        )

    # ------------------------------------------------------------------ internals

    def _say(self, message: str) -> None:
        if self.progress:
            self.progress(message)

    def _prepare_files(self) -> None:
        state_store.make_private_dir(self.state_dir)
        state_store.reset_servers_dir(self.state_dir)
        stacks = {s.stack: s.password_envs for s in self.plan.servers}
        secrets: list[str] = []
        for stack, envs in stacks.items():
            passwords = state_store.load_or_create_passwords(self.state_dir, stack, envs)
            self._passwords[stack] = passwords
            secrets.extend(passwords.values())
        for server in self.plan.servers:
            Path(server.dir).mkdir(parents=True, exist_ok=True)
            text = render_text(self.plan.configs[server.name])
            # The invariant of the whole design: configs reference passwords, never hold them.
            if any(secret in text for secret in secrets):
                raise BootError(f"a password would be written into {server.conf_path}; refusing")
            server.conf_path.write_text(text)
        self._save()

    def _save(self) -> None:
        state_store.save_state(self.state_dir, state_store.State(plan=self.plan, pids=self.pids))

    def _start_all(self, binary: Path) -> None:
        hub = self.plan.hub_servers
        self._say(f"starting hub servers {', '.join(s.name for s in hub)}")
        for server in hub:
            self._spawn(binary, server)
        self._wait_hub()
        edges = self.plan.edge_servers
        if edges:
            self._say(f"starting edge servers {', '.join(s.name for s in edges)}")
            for server in edges:
                self._spawn(binary, server)
            self._wait_started(edges)
            self._wait_leafs(edges)

    def _spawn(self, binary: Path, server: ServerPlan) -> None:
        env = _server_env(self, server)
        child = processes.start_server(binary, server.conf_path, server.log_path, env)
        self._children[server.name] = child
        self.pids[server.name] = child.pid
        self._save()

    def _wait_hub(self) -> None:
        """Wait until every running hub server is ready, restarting a lone straggler."""
        hub = [s for s in self.plan.hub_servers if self.running(s.name)]
        self._say(
            f"waiting for the hub cluster ({', '.join(s.name for s in hub)}): "
            "routes, JetStream meta group, stream leaders, /healthz"
        )
        stragglers = hub_health.Stragglers(patience=self.timeout * _STRAGGLER_SHARE)

        def ready() -> bool:
            problems = hub_health.hub_problems(hub)
            for name in stragglers.due(problems, time.monotonic()):
                self._say(f"{name} alone stays unready ({problems[name]}); restarting it")
                self.stop_server(name, timeout=3.0)
                self._spawn(processes.nats_server_binary(), self.plan.server(name))
            return not any(problems.values())

        self._wait(
            "hub cluster",
            hub,
            ready,
            "the hub servers did not form a JetStream cluster (routes need each other's "
            "cluster ports; a meta leader needs a majority of the hub servers)",
            explain=lambda s: hub_health.hub_problems(hub)[s.name] or "ready",
        )

    def _wait_started(self, servers: list[ServerPlan]) -> None:
        names = ", ".join(s.name for s in servers)
        self._say(f"waiting for {names} to answer /healthz")
        self._wait(
            f"server start of {names}",
            servers,
            lambda: all(monitor.healthy(s.http_port, "?js-server-only=true") for s in servers),
            "the server did not become healthy",
        )

    def _wait_leafs(self, edges: list[ServerPlan]) -> None:
        if not edges:
            return
        self._say(f"waiting for leafnode connections of {', '.join(s.name for s in edges)}")

        def connected() -> bool:
            return all(
                set(_LEAF_ACCOUNTS) <= set(monitor.leaf_accounts(s.http_port)) for s in edges
            )

        self._wait(
            "leafnode connections",
            edges,
            connected,
            "an edge did not connect to the hub: check the hub's leaf-only users and passwords "
            "(credentials files) and the edge's log",
        )
        for server in edges:
            if server.role == "edge":
                self._wait(
                    f"JetStream of {server.name}",
                    [server],
                    lambda s=server: monitor.healthy(s.http_port),
                    "the edge's JetStream did not become ready",
                )

    def _wait(
        self,
        what: str,
        servers: list[ServerPlan],
        ready: Callable[[], bool],
        hint: str,
        *,
        explain: Callable[[ServerPlan], str] | None = None,
        seconds: float | None = None,
    ) -> None:
        seconds = self.timeout if seconds is None else seconds
        deadline = time.monotonic() + seconds
        while True:
            for server in servers:
                self._check_alive(server)
            if ready():
                return
            if time.monotonic() >= deadline:
                state = explain or (lambda s: monitor.health_error(s.http_port))
                details = "\n".join(_server_report(s, state(s)) for s in servers)
                raise BootError(
                    f"{what} not ready within {seconds:.0f}s: {hint}. "
                    f"Raise --timeout on a slow machine.\n{details}"
                )
            time.sleep(_POLL)

    def _check_alive(self, server: ServerPlan) -> None:
        if self.running(server.name):
            return
        log = processes.tail(server.log_path)
        self._forget(server.name)
        busy = _busy_port(log)
        if busy:
            raise processes.PortBusy(
                f"{server.name} could not listen on port {busy}: another program took it; "
                "run `up` again (free ports are picked anew) or choose another --base-port"
            )
        raise BootError(
            f"{server.name} exited while starting; last lines of {server.log_path}:\n{log}"
        )

    def _stop(self, names: list[str], timeout: float) -> None:
        targets = [(self.pids[n], self.plan.server(n).conf_path) for n in names if n in self.pids]
        processes.stop_many(targets, timeout=timeout)
        for name in names:
            self._forget(name)

    def _forget(self, name: str) -> None:
        child = self._children.pop(name, None)
        if child is not None:
            if child.poll() is None:  # never leave a process behind, even after a failure
                child.kill()
            # Reap our own child: no zombie, no ResourceWarning.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self.pids.pop(name, None)
        self._save()


def _server_env(topology: Topology, server: ServerPlan) -> dict[str, str]:
    stacks = {server.stack, topology.plan.hub_stack}
    return server_env(topology.plan, server, {s: topology.passwords(s) for s in stacks})


def _status(
    server: ServerPlan, pid: int | None, state: str, leafs: int | None, detail: str = ""
) -> ServerStatus:
    return ServerStatus(
        name=server.name,
        role=server.role,
        stack=server.stack,
        client_url=server.client_url,
        pid=pid,
        state=state,
        leafnodes=leafs,
        detail=detail,
    )


def _server_report(server: ServerPlan, state: str) -> str:
    """One line per server for a boot error; the log's last lines where something is wrong."""
    line = f"  {server.name}: {state} (log {server.log_path})"
    if state in ("ok", "ready"):
        return line
    log = processes.tail(server.log_path, _LOG_LINES)
    return line + "".join(f"\n    | {entry}" for entry in log.splitlines())


def _busy_port(log: str) -> str | None:
    for line in log.splitlines():
        if "address already in use" in line:
            # "... listen tcp 127.0.0.1:4222: bind: address already in use"
            head = line.split(": bind:")[0]
            return head.rsplit(":", 1)[-1]
    return None


def _refuse_if_running(state_dir: Path) -> None:
    saved = state_store.load_state(state_dir)
    if saved is None:
        return
    alive = [
        name
        for name, pid in saved.pids.items()
        if processes.is_ours(pid, saved.plan.server(name).conf_path)
    ]
    if alive:
        raise BootError(
            f"a sandbox is already up from {state_dir} ({', '.join(alive)} running); "
            "run `python -m sandbox down` first, or pass another --state-dir"
        )
