"""When is the local hub cluster ready, and which of its servers should be restarted?

nats-server 2.10 now and then leaves one server of an otherwise healthy cluster "not
current with the meta leader", or outside the JetStream meta group, and never repairs it
(seen here on fresh boots and on restarts; nats-io/nats-server#5976 reports the same in
Kubernetes). The other servers are fine and a restart of the straggler fixes it. In
Kubernetes the chart's startup probe (``/healthz``, 90 failures 10 s apart) restarts such
a pod after 15 minutes; local mode cannot wait that long, so it restarts a straggler once
it has been the only thing wrong for a while.

``hub_problems`` asks the servers (I/O); ``Stragglers`` decides (pure, unit-tested).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from sandbox import monitor
from sandbox.plan import ServerPlan

MAX_RESTARTS = 2  # per server and wait: a server that fails again after that is broken


def hub_problems(hub: list[ServerPlan]) -> dict[str, str]:
    """Server name -> why it is not ready yet ("" when it is), for the running hub servers.

    Ready means: ``/healthz`` ok (JetStream current with the meta leader), a route to every
    other running hub server, a meta leader known and, as that leader sees it, a member of
    the meta group (or R3 streams cannot be placed).
    """
    members = meta_members(hub)
    return {s.name: _problem(s, len(hub), members) for s in hub}


def meta_members(hub: list[ServerPlan]) -> set[str]:
    """Servers of the JetStream meta group as its leader reports them (empty: no leader)."""
    for server in hub:
        meta = (monitor.jsz(server.http_port) or {}).get("meta_cluster") or {}
        if meta.get("leader") == server.name:
            return {server.name} | {r["name"] for r in meta.get("replicas") or []}
    return set()


def _problem(server: ServerPlan, size: int, members: set[str]) -> str:
    health = monitor.get_json(server.http_port, "/healthz")
    if health is None:
        return "monitoring port not answering"
    if health.get("status") != "ok":
        return str(health.get("error") or health.get("status"))
    if size == 1:
        return ""
    routes = monitor.route_count(server.http_port)
    if routes < size - 1:
        return f"{routes} of {size - 1} cluster routes"
    meta = (monitor.jsz(server.http_port) or {}).get("meta_cluster") or {}
    if not meta.get("leader"):
        return f"no meta leader known (meta group of {meta.get('cluster_size', 0)} of {size})"
    if members and server.name not in members:
        return f"outside the JetStream meta group {sorted(members)}"
    return ""


@dataclass
class Stragglers:
    """Which servers to restart: failing for ``patience`` seconds while a majority is ready.

    When a majority is not ready the cluster as a whole is slow (or has no quorum), which a
    restart does not cure: then nobody is restarted and the clocks start over.
    """

    patience: float
    max_restarts: int = MAX_RESTARTS
    failing_since: dict[str, float] = field(default_factory=dict)
    restarts: Counter[str] = field(default_factory=Counter)

    def due(self, problems: Mapping[str, str], now: float) -> list[str]:
        failing = sorted(name for name, problem in problems.items() if problem)
        ready = len(problems) - len(failing)
        if ready <= len(problems) // 2:
            self.failing_since.clear()
            return []
        for name in list(self.failing_since):
            if name not in failing:
                del self.failing_since[name]
        due = []
        for name in failing:
            since = self.failing_since.setdefault(name, now)
            if now - since >= self.patience and self.restarts[name] < self.max_restarts:
                due.append(name)
                self.restarts[name] += 1
                del self.failing_since[name]
        return due
