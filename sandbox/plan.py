"""Stacks -> every local server's name, ports, files and nats.conf (pure data, no I/O).

A ``Plan`` is what ``up`` boots and what ``status``, ``verify`` and ``down`` read back from
``state.json``: it holds no password (those live in the 0600 credential files).

Server names are the chart's (``serverNamePrefix`` + pod name: ``nats-0``,
``edge-a-nats-0``). Each edge's leafnode remotes dial one hub server's leafnode port:
one env var holds one URL (the values say ``urls: [$HUB_APP_URL]``), so local mode
cannot list every hub server in it the way the NodePort spreads edges over pods.
Edges are spread round-robin instead (edge 0 -> ``nats-0``, edge 1 -> ``nats-1``...),
which also makes events cross the hub's routes to reach the stream leader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from components import credentials as creds
from components.chart_values import edge_values, hub_values
from components.stream_config import edge_buffer_stream_config, hub_stream_config
from sandbox import server_config
from sandbox.server_config import LOOPBACK, LocalAddresses
from sandbox.stacks import Stack, StackError, StackSet

Role = Literal["hub", "edge"]
# (stack, chart values) -> the chart's nats.conf dict; the default mirrors chart 1.2.4,
# the fidelity test passes one that renders the real chart.
Renderer = Callable[[Stack, dict[str, Any]], dict[str, Any]]

SERVERS_DIR = "servers"


def mirror_renderer(stack: Stack, values: dict[str, Any]) -> dict[str, Any]:
    return server_config.chart_config(values, release_name=stack.settings.release_name)


@dataclass(frozen=True)
class ServerPlan:
    """One nats-server process: who it is, where it listens, where its files are."""

    name: str  # SERVER_NAME, e.g. nats-0 or edge-a-nats-0
    stack: str  # stack file name, e.g. hub or edge-a
    role: Role
    edge: str | None  # the edge's serverName (role edge)
    client_port: int
    http_port: int
    leafnode_port: int | None
    cluster_port: int | None
    dir: str  # nats.conf, nats.log, nats.pid and jetstream/ live here
    hub_server: str | None = None  # role edge: the hub server its remotes dial
    password_envs: tuple[str, ...] = ()  # env vars with this stack's passwords

    @property
    def client_url(self) -> str:
        return f"nats://{LOOPBACK}:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def conf_path(self) -> Path:
        return Path(self.dir) / "nats.conf"

    @property
    def log_path(self) -> Path:
        return Path(self.dir) / "nats.log"

    @property
    def pid_path(self) -> Path:
        return Path(self.dir) / "nats.pid"

    @property
    def store_dir(self) -> Path:
        return Path(self.dir) / "jetstream"

    def ports(self) -> dict[int, str]:
        """Port -> what listens there, for busy-port messages."""
        named = {
            "client": self.client_port,
            "monitor": self.http_port,
            "leafnodes": self.leafnode_port,
            "cluster": self.cluster_port,
        }
        return {port: f"{self.name} {what}" for what, port in named.items() if port}


@dataclass(frozen=True)
class Plan:
    """The whole local topology. ``configs`` are the localized nats.conf dicts by server."""

    hub_stack: str
    edge_stacks: tuple[str, ...]
    servers: tuple[ServerPlan, ...]
    stream: dict[str, Any]  # the hub stream, as hub_stream_config makes it
    buffers: dict[str, dict[str, Any]]  # edge name -> its buffer stream config
    hub_domain: str
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def hub_servers(self) -> list[ServerPlan]:
        return [s for s in self.servers if s.role == "hub"]

    @property
    def edge_servers(self) -> list[ServerPlan]:
        return [s for s in self.servers if s.role == "edge"]

    @property
    def edges(self) -> list[str]:
        """Edge names in boot order."""
        return list(dict.fromkeys(s.edge for s in self.edge_servers if s.edge))

    def server(self, name: str) -> ServerPlan:
        for server in self.servers:
            if server.name == name:
                return server
        known = ", ".join(s.name for s in self.servers)
        raise KeyError(f"no server {name!r} in this sandbox (servers: {known})")

    def edge_server(self, edge: str) -> ServerPlan:
        """The first server of edge ``edge`` (where its app user publishes)."""
        for server in self.edge_servers:
            if server.edge == edge:
                return server
        raise KeyError(f"no edge {edge!r} in this sandbox (edges: {', '.join(self.edges)})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        servers = tuple(
            ServerPlan(**{**s, "password_envs": tuple(s["password_envs"])}) for s in data["servers"]
        )
        return cls(
            hub_stack=data["hub_stack"],
            edge_stacks=tuple(data["edge_stacks"]),
            servers=servers,
            stream=data["stream"],
            buffers=data["buffers"],
            hub_domain=data["hub_domain"],
            configs=data.get("configs", {}),
        )


def make_plan(
    stacks: StackSet,
    state_dir: Path,
    ports: Iterator[int],
    render: Renderer = mirror_renderer,
) -> Plan:
    """Name, place and configure every server; ``ports`` yields the loopback ports to use."""
    hub = stacks.hub.settings.hub
    assert hub is not None
    facts = stacks.facts
    chart_confs: list[tuple[Stack, list[str], dict[str, Any]]] = []
    for stack in (stacks.hub, *stacks.edges):
        values = (
            hub_values(stack.settings)
            if stack.settings.role == "hub"
            else edge_values(stack.settings, facts)
        )
        replicas = hub.replicas if stack is stacks.hub else _edge_replicas(stack)
        names = server_config.server_names(values, stack.settings.release_name, replicas)
        chart_confs.append((stack, names, render(stack, values)))
    _check_unique_names([n for _, names, _ in chart_confs for n in names])

    servers: list[ServerPlan] = []
    configs: dict[str, dict[str, Any]] = {}
    hub_names = chart_confs[0][1]
    for index, (stack, names, conf) in enumerate(chart_confs):
        role: Role = "hub" if stack is stacks.hub else "edge"
        # Port numbers first, for the whole stack: routes name every member's cluster port.
        placed = [_ports(conf, ports) for _ in names]
        routes = tuple(server_config.route_url(p[3]) for p in placed if p[3] is not None)
        for ordinal, name in enumerate(names):
            client, http, leaf, cluster = placed[ordinal]
            directory = state_dir / SERVERS_DIR / name
            server = ServerPlan(
                name=name,
                stack=stack.name,
                role=role,
                edge=stack.settings.edge_name if role == "edge" else None,
                client_port=client,
                http_port=http,
                leafnode_port=leaf,
                cluster_port=cluster,
                dir=str(directory),
                hub_server=hub_names[(index - 1) % len(hub_names)] if role == "edge" else None,
                password_envs=_password_envs(role),
            )
            local = LocalAddresses(
                client_port=client,
                http_port=http,
                leafnode_port=leaf,
                cluster_port=cluster,
                routes=routes,
                store_dir=str(server.store_dir),
                pid_file=str(server.pid_path),
            )
            servers.append(server)
            configs[name] = server_config.localize(conf, local)

    return Plan(
        hub_stack=stacks.hub.name,
        edge_stacks=tuple(e.name for e in stacks.edges),
        servers=tuple(servers),
        stream=hub_stream_config(stacks.hub.settings.stream, hub.buffered_edges),
        buffers={
            e.settings.edge_name: edge_buffer_stream_config(
                facts.stream_name, list(facts.stream_subjects), e.settings.edge.buffer
            )
            for e in stacks.edges
            if e.settings.edge is not None and e.settings.edge.buffer.enabled
        },
        hub_domain=hub.jetstream_domain,
        configs=configs,
    )


def server_env(
    plan: Plan, server: ServerPlan, passwords: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The variables the pod would get: SERVER_NAME, its stack's passwords, remote URLs.

    ``passwords`` maps stack name -> env var -> password. An edge's remote URLs carry the
    hub's leaf-only users, dialling its hub server's leafnode port.
    """
    env = {"SERVER_NAME": server.name, "POD_NAME": server.name}
    own = passwords[server.stack]
    env.update({name: own[name] for name in server.password_envs})
    if server.role == "edge":
        assert server.hub_server is not None
        hub_server = plan.server(server.hub_server)
        hub_passwords = passwords[plan.hub_stack]
        leaf_url = f"nats://{LOOPBACK}:{hub_server.leafnode_port}"
        for remote in creds.EDGE_REMOTES:
            env[remote.env] = creds.remote_url(
                leaf_url, remote.credential.user, hub_passwords[remote.credential.env]
            )
    return env


def _password_envs(role: Role) -> tuple[str, ...]:
    chosen = creds.HUB_CREDENTIALS if role == "hub" else creds.EDGE_CREDENTIALS
    return tuple(c.env for c in chosen)


def _edge_replicas(stack: Stack) -> int:
    assert stack.settings.edge is not None
    return stack.settings.edge.replicas


def _ports(conf: dict[str, Any], ports: Iterator[int]) -> tuple[int, int, int | None, int | None]:
    client, http = next(ports), next(ports)
    leaf = next(ports) if "leafnodes" in conf and "port" in conf["leafnodes"] else None
    cluster = next(ports) if "cluster" in conf else None
    return client, http, leaf, cluster


def ports_needed(stacks: StackSet) -> int:
    """An upper bound of the ports ``make_plan`` takes (4 per server)."""
    hub = stacks.hub.settings.hub
    assert hub is not None
    return 4 * (hub.replicas + sum(_edge_replicas(e) for e in stacks.edges))


def _check_unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise StackError(
                f"two servers would be named {name!r}; NATS drops connections of servers "
                "that share a name; give each edge a unique ops-nats:edge.serverName"
            )
        seen.add(name)
