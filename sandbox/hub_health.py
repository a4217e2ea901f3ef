"""When is the local hub cluster ready, and which of its servers should be restarted?

nats-server 2.10 now and then leaves one server of an otherwise healthy cluster "not
current with the meta leader", outside the JetStream meta group, or silent towards the
meta leader (then it does not vote either, and losing one more server stalls the
cluster), and never repairs it
(seen here on fresh boots and on restarts; nats-io/nats-server#5976 reports the same in
Kubernetes). The other servers are fine and a restart of the straggler fixes it. In
Kubernetes the chart's startup probe (``/healthz``, 90 failures 10 s apart) restarts such
a pod after 15 minutes; local mode cannot wait that long, so it restarts a straggler once
it has been the only thing wrong for a while.

``hub_problems`` asks the servers (I/O); ``server_problem`` and ``Stragglers`` judge what
they said (pure, unit-tested).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox import monitor
from sandbox.plan import ServerPlan

MAX_RESTARTS = 2  # per server and wait: a server that fails again after that is broken
_JSZ = "/jsz?accounts=true&streams=true"
# The meta leader hears from every follower about once a second; a follower silent for
# longer than this has stopped taking part (a hung process or a wedged raft loop).
_SILENT_AFTER_S = 5.0


def hub_problems(hub: list[ServerPlan]) -> dict[str, str]:
    """Server name -> why it is not ready yet ("" when it is), for the running hub servers.

    Ready means: ``/healthz`` ok (JetStream current with the meta leader), a route to every
    other running hub server, a meta leader known and, as that leader sees it, a member of
    the meta group (or R3 streams cannot be placed) that answered it lately, and a leader
    for every stream it holds (or clients get no answer from that stream).
    """
    views = {s.name: ServerView.read(s) for s in hub}
    leader = _meta_leader_view({name: view.jsz for name, view in views.items()})
    return {name: server_problem(view, len(hub), leader) for name, view in views.items()}


@dataclass(frozen=True)
class ServerView:
    """What one server's monitoring port says (``None``: it did not answer)."""

    name: str
    health: dict[str, Any] | None
    routes: int
    jsz: dict[str, Any] | None

    @classmethod
    def read(cls, server: ServerPlan) -> ServerView:
        return cls(
            name=server.name,
            health=monitor.get_json(server.http_port, "/healthz"),
            routes=monitor.route_count(server.http_port),
            jsz=monitor.get_json(server.http_port, _JSZ),
        )


def _meta_leader_view(views: Mapping[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    for name, jsz in views.items():
        meta = (jsz or {}).get("meta_cluster") or {}
        if meta.get("leader") == name:
            return meta
    return None


def _replicas(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in meta.get("replicas") or []}


def server_problem(view: ServerView, size: int, leader: dict[str, Any] | None) -> str:
    """Why this server is not ready ("" when it is); ``leader`` is the meta leader's view."""
    if view.health is None:
        return "monitoring port not answering"
    if view.health.get("status") != "ok":
        return str(view.health.get("error") or view.health.get("status"))
    if size > 1:
        if view.routes < size - 1:
            return f"{view.routes} of {size - 1} cluster routes"
        meta = (view.jsz or {}).get("meta_cluster") or {}
        if not meta.get("leader"):
            return f"no meta leader known (meta group of {meta.get('cluster_size', 0)} of {size})"
        if leader and view.name != leader["leader"]:
            replica = _replicas(leader).get(view.name)
            if replica is None:
                members = sorted({leader["leader"], *_replicas(leader)})
                return f"outside the JetStream meta group {members}"
            silent = replica.get("active", 0) / 1e9
            if silent > _SILENT_AFTER_S:
                return f"the meta leader has not heard from it for {silent:.0f}s"
    leaderless = _leaderless_streams(view.jsz)
    if leaderless:
        return f"no leader yet for stream {', '.join(leaderless)}"
    return ""


def _leaderless_streams(jsz: dict[str, Any] | None) -> list[str]:
    """Replicated streams on this server without a leader (an election is under way)."""
    return sorted(
        f"{account['name']} > {stream['name']}"
        for account in (jsz or {}).get("account_details") or []
        for stream in account.get("stream_detail") or []
        if "cluster" in stream and not stream["cluster"].get("leader")
    )


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
