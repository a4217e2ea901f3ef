"""Stack files that cannot run together are refused before any server starts."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_STACKS, write_stacks

from sandbox.plan import make_plan, server_env
from sandbox.stacks import StackError, load_stacks
from sandbox.state import generate_password


def test_the_repo_stacks_make_one_hub_of_three_and_two_edges():
    stacks = load_stacks(REPO_STACKS)
    plan = make_plan(stacks, Path("/state"), itertools.count(20000))
    assert [s.name for s in plan.hub_servers] == ["nats-0", "nats-1", "nats-2"]
    assert [s.name for s in plan.edge_servers] == ["edge-a-nats-0", "edge-b-nats-0"]
    assert plan.buffers.keys() == {"edge-a"}
    assert plan.stream["sources"] == [
        {"name": "ops", "external": {"api": "$JS.edge-a.API", "deliver": ""}}
    ]
    ports = [p for s in plan.servers for p in s.ports()]
    assert len(ports) == len(set(ports)), "every port is used once"


def test_edges_dial_hub_servers_round_robin_with_leaf_only_users():
    stacks = load_stacks(REPO_STACKS)
    plan = make_plan(stacks, Path("/state"), itertools.count(20000))
    assert [s.hub_server for s in plan.edge_servers] == ["nats-0", "nats-1"]
    passwords = {
        "hub": {e: f"hub{e}" for e in plan.hub_servers[0].password_envs},
        "edge-a": {e: f"edgea{e}" for e in plan.edge_servers[0].password_envs},
    }
    env = server_env(plan, plan.server("edge-a-nats-0"), passwords)
    leaf_port = plan.server("nats-0").leafnode_port
    assert env["HUB_APP_URL"] == f"nats://leaf-app:hubLEAF_APP_PASSWORD@127.0.0.1:{leaf_port}"
    assert env["HUB_SYS_URL"] == f"nats://leaf-sys:hubLEAF_SYS_PASSWORD@127.0.0.1:{leaf_port}"
    assert env["SERVER_NAME"] == "edge-a-nats-0"
    assert "ADMIN_PASSWORD" in env and "LEAF_APP_PASSWORD" not in env


def test_an_edge_missing_from_the_hubs_edges_is_rejected(tmp_path):
    stacks_dir = write_stacks(tmp_path, edges={"edge-b": {}})
    (stacks_dir / "Pulumi.edge-z.yaml").write_text(
        "config:\n"
        "  ops-nats:role: edge\n"
        "  ops-nats:edge:\n"
        "    hubStack: organization/ops-nats/hub\n"
    )
    with pytest.raises(StackError, match=r"edge 'edge-z' .* not in the hub's ops-nats:hub.edges"):
        load_stacks(stacks_dir)


def test_buffering_must_match_between_hub_and_edge(tmp_path):
    stacks_dir = write_stacks(tmp_path, edges={"edge-a": {"buffered": True}})
    hub = stacks_dir / "Pulumi.hub.yaml"
    hub.write_text(hub.read_text().replace("buffered: true", "buffered: false"))
    with pytest.raises(StackError, match="the hub stream sources exactly the buffered edges"):
        load_stacks(stacks_dir)


def test_exactly_one_hub_is_booted():
    with pytest.raises(StackError, match="exactly one hub stack, got 0"):
        load_stacks(REPO_STACKS, ["edge-a"])


def test_an_unknown_stack_name_lists_the_stack_files_there_are():
    with pytest.raises(StackError, match=r"no stack file for edge-q .*found: edge-a, edge-b, hub"):
        load_stacks(REPO_STACKS, ["hub", "edge-q"])


def test_an_invalid_stack_file_names_the_file_and_the_key(tmp_path):
    stacks_dir = write_stacks(tmp_path, edges={})
    hub = stacks_dir / "Pulumi.hub.yaml"
    hub.write_text(hub.read_text().replace("replicas: 1\n", "replicas: 1\n    replica: 2\n", 1))
    with pytest.raises(StackError, match=r"(?s)Pulumi.hub.yaml.*ops-nats:hub.replica = 2: unknown"):
        load_stacks(stacks_dir)


def test_generated_passwords_are_plain_strings_to_nats():
    # nats-server parses an env var's value: 12k would be a number, -x a syntax error.
    for _ in range(200):
        password = generate_password()
        assert password[0].isalpha() and password.isalnum() and len(password) == 32


def test_local_mode_runs_where_pulumi_is_not_installed():
    # Import the whole CLI with pulumi (and the dev-only chart renderer) made unimportable.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('pulumi', 'pulumi_kubernetes', 'pulumi_random',"
        " 'helm_python'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import sandbox.cli\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_STACKS.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
