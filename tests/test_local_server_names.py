"""Every server needs its own name: local mode checks it, because NATS does not refuse."""

from __future__ import annotations

import pytest
from conftest import log_shows, servers_running_from, wait_until, write_stacks

from sandbox import cli, monitor
from sandbox.stacks import StackError, load_stacks


def test_two_edges_with_the_same_server_name_are_rejected(tmp_path):
    stacks_dir = write_stacks(
        tmp_path, edges={"edge-a": {"buffered": True}, "edge-c": {"serverName": "edge-a"}}
    )
    with pytest.raises(StackError, match=r"'edge-a' and 'edge-c' both use serverName 'edge-a'"):
        load_stacks(stacks_dir)


def test_up_with_duplicate_edge_names_fails_before_anything_starts(tmp_path, capsys):
    stacks_dir = write_stacks(
        tmp_path / "stacks", edges={"edge-b": {}, "edge-c": {"serverName": "edge-b"}}
    )
    state_dir = tmp_path / "state"
    code = cli.main(["up", "--stacks-dir", str(stacks_dir), "--state-dir", str(state_dir)])
    assert code == 2
    assert "both use serverName 'edge-b'" in capsys.readouterr().err
    assert not (state_dir / "state.json").exists()
    assert servers_running_from(state_dir) == []


@pytest.mark.nats
def test_regression_nats_itself_lets_a_second_server_of_the_same_name_break_the_first(
    small_stacks, boot, extra_server
):
    # What the runbook's "duplicate names break the connections" means, shown on real
    # servers: NATS accepts a second edge-b-nats-0, then the hub keeps replacing one
    # leaf connection by the other, so neither stays joined. Hence the check above.
    topology = boot(load_stacks(small_stacks))
    edge_b = topology.plan.server("edge-b-nats-0")
    impostor = extra_server(topology, "edge-b-nats-0", {})
    log_shows(impostor.log, "Duplicate Remote LeafNode Connection")
    log_shows(edge_b.log_path, "Duplicate Remote LeafNode Connection")

    impostor.stop()
    wait_until(
        lambda: monitor.leaf_accounts(edge_b.http_port) == ["APP", "SYS"],
        "edge-b joined again once the impostor is gone",
    )
