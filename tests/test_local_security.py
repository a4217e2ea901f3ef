"""Who may log in where, and where passwords are (never) written."""

from __future__ import annotations

import pytest
from conftest import log_shows, run, servers_running_from

from components import credentials as creds
from components.jetstream import JetStreamError, Target, connected
from sandbox import monitor
from sandbox.stacks import load_stacks
from sandbox.topology import BootError, Topology

pytestmark = pytest.mark.nats


def _login(url: str, user: str, password: str) -> None:
    async def attempt():
        async with connected(Target(servers=(url,), user=user, password=password, timeout=5)):
            pass

    run(attempt())


def test_the_right_password_logs_in_and_a_wrong_one_is_refused(production_topology):
    hub = production_topology.plan.server("nats-0")
    app = production_topology.passwords("hub")[creds.APP.env]
    _login(hub.client_url, "app", app)
    with pytest.raises(JetStreamError, match="refused the credentials"):
        _login(hub.client_url, "app", app + "x")
    edge = production_topology.plan.server("edge-b-nats-0")
    with pytest.raises(JetStreamError, match="refused the credentials"):
        _login(edge.client_url, "admin", "not-the-password")


@pytest.mark.parametrize("leaf_user", [creds.LEAF_SYS, creds.LEAF_APP])
def test_leafnode_only_users_cannot_log_in_on_the_client_port(production_topology, leaf_user):
    hub = production_topology.plan.server("nats-1")
    password = production_topology.passwords("hub")[leaf_user.env]
    with pytest.raises(JetStreamError, match="refused the credentials"):
        _login(hub.client_url, leaf_user.user, password)


def test_an_edges_own_users_are_unknown_to_the_hub(production_topology):
    hub = production_topology.plan.server("nats-0")
    edge_app = production_topology.passwords("edge-b")[creds.APP.env]
    with pytest.raises(JetStreamError, match="refused the credentials"):
        _login(hub.client_url, "app", edge_app)


def test_an_edge_with_wrong_leaf_credentials_does_not_join(production_topology, extra_server):
    topology = production_topology
    hub = topology.plan.server("nats-1")
    wrong = f"nats://leaf-app:wrong@127.0.0.1:{hub.leafnode_port}"
    rogue = extra_server(
        topology,
        "edge-b-nats-0",
        {
            "SERVER_NAME": "edge-rogue-nats-0",
            "HUB_APP_URL": wrong,
            "HUB_SYS_URL": wrong.replace("leaf-app", "leaf-sys"),
        },
    )
    log_shows(rogue.log, "Leafnode Error 'Authorization Violation'")
    assert monitor.leaf_accounts(rogue.http_port) == []
    joined = {
        leaf["name"] for s in topology.plan.hub_servers for leaf in monitor.leafz(s.http_port)
    }
    assert joined == {"edge-a-nats-0", "edge-b-nats-0"}


def test_no_password_appears_in_any_generated_file_but_the_credentials(production_topology):
    topology = production_topology
    passwords = [
        p for stack in ("hub", "edge-a", "edge-b") for p in topology.passwords(stack).values()
    ]
    checked = 0
    for path in topology.state_dir.rglob("*"):
        if not path.is_file() or path.parent.name == "credentials" or "jetstream" in path.parts:
            continue
        text = path.read_text(errors="replace")
        assert not [p for p in passwords if p in text], f"password in {path}"
        checked += 1
    assert checked >= 11  # state.json + nats.conf, nats.log (and pid) of 5 servers
    for server in topology.plan.servers:
        text = server.conf_path.read_text()
        assert "$ADMIN_PASSWORD" in text and "$APP_PASSWORD" in text


def test_up_fails_cleanly_when_an_edge_cannot_join(small_stacks, tmp_path, monkeypatch):
    # The edges get a wrong leaf password: `up` must give up in time, say why and stop
    # every server it started.
    from sandbox import topology as topology_module

    real = topology_module.server_env

    def wrong_leaf_password(plan, server, passwords):
        env = real(plan, server, passwords)
        for remote in creds.EDGE_REMOTES:
            if remote.env in env:
                env[remote.env] = env[remote.env].replace("@", "x@", 1)
        return env

    monkeypatch.setattr(topology_module, "server_env", wrong_leaf_password)
    state_dir = tmp_path / "state"
    with pytest.raises(BootError, match="leafnode connections not ready within 3s"):
        Topology.boot(load_stacks(small_stacks), state_dir, timeout=3)
    assert servers_running_from(state_dir) == []
