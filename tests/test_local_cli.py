"""``python -m sandbox``: the commands an operator types, and how they fail."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import servers_running_from

from sandbox import cli, processes
from sandbox.stacks import load_stacks
from sandbox.topology import BootError, Topology

pytestmark = pytest.mark.nats


@pytest.fixture
def sandbox_cli(small_stacks, tmp_path, capsys):
    """``sandbox_cli("up", ...)`` -> (exit code, stdout, stderr) against a private state dir."""
    state_dir = tmp_path / "state"

    def _run(*argv: str) -> tuple[int, str, str]:
        extra = ["--state-dir", str(state_dir)]
        if argv[0] in ("up", "demo"):
            extra += ["--stacks-dir", str(small_stacks)]
        code = cli.main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    _run.state_dir = state_dir
    yield _run
    cli.main(["down", "--state-dir", str(state_dir)])
    assert servers_running_from(state_dir) == []


def test_up_status_verify_logs_credentials_down(sandbox_cli):
    code, out, _ = sandbox_cli("up")
    assert code == 0
    assert "edge-a-nats-0" in out and "running" in out
    assert "credentials/<stack>.json (mode 0600)" in out
    topology = Topology.attach(sandbox_cli.state_dir)
    passwords = [p for s in ("hub", "edge-a", "edge-b") for p in topology.passwords(s).values()]
    assert not [p for p in passwords if p in out], "up never prints a password"

    code, out, _ = sandbox_cli("status", "--json")
    assert code == 0
    assert {s["name"]: s["state"] for s in json.loads(out)["servers"]} == {
        "nats-0": "running",
        "edge-a-nats-0": "running",
        "edge-b-nats-0": "running",
    }

    code, out, _ = sandbox_cli("verify", "--json")
    assert code == 0, out
    assert json.loads(out)["ok"] is True

    code, out, _ = sandbox_cli("logs", "edge-b-nats-0", "--lines", "200")
    assert code == 0 and "Leafnode connection created" in out

    code, out, _ = sandbox_cli("credentials", "--stack", "hub")
    assert code == 0
    assert f"APP_PASSWORD={topology.passwords('hub')['APP_PASSWORD']}" in out

    code, out, _ = sandbox_cli("down")
    assert code == 0 and "stopped:" in out
    assert servers_running_from(sandbox_cli.state_dir) == []
    code, _, err = sandbox_cli("status")
    assert code == 2 and "run `python -m sandbox up` first" in err


def test_verify_exits_non_zero_naming_what_is_broken(sandbox_cli):
    assert sandbox_cli("up")[0] == 0
    topology = Topology.attach(sandbox_cli.state_dir)
    topology.stop_server("edge-b-nats-0")

    code, out, _ = sandbox_cli("verify", "--json", "--verify-timeout", "3")
    assert code == 1
    failed = json.loads(out)["failed"]
    assert {"servers running", "leafnodes", "events edge-b"} <= set(failed)
    assert "events edge-a" not in failed  # the other edge still delivers

    code, out, _ = sandbox_cli("verify", "--verify-timeout", "3")
    assert code == 1 and "verify: FAILED" in out and "events edge-b" in out

    Topology.attach(sandbox_cli.state_dir).start_server("edge-b-nats-0")
    assert sandbox_cli("verify", "--json")[0] == 0


def test_up_twice_is_refused_while_the_first_is_running(sandbox_cli):
    assert sandbox_cli("up")[0] == 0
    code, _, err = sandbox_cli("up")
    assert code == 2 and "already up" in err and "python -m sandbox down" in err


def test_up_refuses_a_busy_port_before_starting_anything(sandbox_cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = sandbox_cli("up", "--base-port", str(port))
    assert code == 2
    assert f"port {port} on 127.0.0.1 (for nats-0 client) is already in use" in err
    assert not (sandbox_cli.state_dir / "state.json").exists()
    assert servers_running_from(sandbox_cli.state_dir) == []


def test_up_names_a_port_taken_while_the_servers_start(small_stacks, tmp_path, monkeypatch):
    # Free ports are picked, then the servers bind them: another program may come first.
    monkeypatch.setattr(processes, "check_ports_free", lambda ports: None)
    state_dir = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(processes.PortBusy, match=f"nats-0 could not listen on port {port}"):
            Topology.boot(load_stacks(small_stacks), state_dir, base_port=port, timeout=10)
    assert servers_running_from(state_dir) == []


def test_up_shows_the_log_of_a_server_that_does_not_start(small_stacks, tmp_path):
    def broken(stack, values):
        from sandbox.plan import mirror_renderer

        conf = mirror_renderer(stack, values)
        if stack.settings.role == "edge":
            conf["jetstream"] = {"max_memory_store": "plenty"}
        return conf

    state_dir = tmp_path / "state"
    with pytest.raises(BootError, match=r"(?s)edge-a-nats-0 exited while starting.*max_mem_store"):
        Topology.boot(load_stacks(small_stacks), state_dir, render=broken, timeout=10)
    assert servers_running_from(state_dir) == []


def test_demo_boots_verifies_summarises_and_stops_everything(sandbox_cli):
    code, out, _ = sandbox_cli("demo")
    assert code == 0, out
    assert "verify: OK" in out
    assert "Summary" in out and "edge-a (buffered), edge-b (plain)" in out
    assert "down: stopped 3 servers" in out
    assert servers_running_from(sandbox_cli.state_dir) == []
