"""What ``pulumi up`` deploys works: boot the configs chart 1.2.4 itself renders.

The chart is rendered offline with the program's real values for the hub and both
edges; only addresses, ports and directories are rewritten for loopback; the servers
then pass the same event-path check as local mode.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from conftest import BOOT_TIMEOUT, CHART_PATH, REPO_STACKS

from components.chart_values import edge_values, hub_values
from sandbox import server_config
from sandbox.plan import server_env
from sandbox.server_config import LOCALIZED_KEYS
from sandbox.stacks import Stack, load_stacks
from sandbox.topology import Topology
from sandbox.verify import verify

pytestmark = [pytest.mark.nats, pytest.mark.chart]

CONFIG_MAP = "nats/templates/config-map.yaml"
STATEFUL_SET = "nats/templates/stateful-set.yaml"


@pytest.fixture(scope="module")
def chart() -> Any:
    helm_python = pytest.importorskip("helm_python")
    return helm_python.Chart.load(str(CHART_PATH))


def _render(chart: Any, stack: Stack, values: dict[str, Any]) -> dict[str, str]:
    return chart.render(
        values, name=stack.settings.release_name, namespace=stack.settings.namespace
    )


def _chart_conf(chart: Any, stack: Stack, values: dict[str, Any]) -> dict[str, Any]:
    text = yaml.safe_load(_render(chart, stack, values)[CONFIG_MAP])["data"]["nats.conf"]
    return server_config.parse_rendered(text)


@pytest.fixture(scope="module")
def chart_topology(chart, tmp_path_factory):
    stacks = load_stacks(REPO_STACKS, ["hub", "edge-a", "edge-b"])
    topology = Topology.boot(
        stacks,
        tmp_path_factory.mktemp("chart-rendered"),
        render=lambda stack, values: _chart_conf(chart, stack, values),
        timeout=BOOT_TIMEOUT,
    )
    try:
        yield topology, stacks
    finally:
        topology.down()


def _values(stacks: Any, stack: Stack) -> dict[str, Any]:
    if stack.settings.role == "hub":
        return hub_values(stack.settings)
    return edge_values(stack.settings, stacks.facts)


def _flatten(conf: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in conf.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_each_server_runs_the_charts_config_with_only_addresses_ports_and_dirs_changed(
    chart, chart_topology
):
    topology, stacks = chart_topology
    for stack in (stacks.hub, *stacks.edges):
        rendered = _flatten(_chart_conf(chart, stack, _values(stacks, stack)))
        for server in (s for s in topology.plan.servers if s.stack == stack.name):
            booted = _flatten(server_config.parse_rendered(server.conf_path.read_text()))
            changed = {
                k for k in rendered.keys() | booted.keys() if rendered.get(k) != booted.get(k)
            }
            assert changed <= LOCALIZED_KEYS, f"{server.name}: {sorted(changed - LOCALIZED_KEYS)}"


def test_server_names_and_environment_are_those_of_the_charts_pods(chart, chart_topology):
    topology, stacks = chart_topology
    for stack in (stacks.hub, *stacks.edges):
        sts = yaml.safe_load(_render(chart, stack, _values(stacks, stack))[STATEFUL_SET])
        container = sts["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        pods = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
        expected_names = [env["SERVER_NAME"].replace("$(POD_NAME)", pod) for pod in pods]
        servers = [s for s in topology.plan.servers if s.stack == stack.name]
        assert [s.name for s in servers] == expected_names
        passwords = {s: topology.passwords(s) for s in {stack.name, topology.plan.hub_stack}}
        local_env = server_env(topology.plan, servers[0], passwords)
        assert set(local_env) == set(env), "local mode sets exactly the pod's variables"


def test_the_charts_configs_pass_the_event_path_check(chart_topology):
    topology, _ = chart_topology
    report = verify(topology, count=3, timeout=30)
    assert report.ok, [f"{c.name}: {c.detail}" for c in report.failed]
    assert {e.edge: e.stored_once for e in report.events} == {"edge-a": 3, "edge-b": 3}
