"""Local mode runs what the chart renders: the config builder equals chart 1.2.4's output."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from conftest import CHART_PATH, REPO_STACKS

from components.chart_values import edge_values, hub_values
from components.settings import chart_fullname
from sandbox import server_config
from sandbox.server_config import LOCALIZED_KEYS, LocalAddresses, UnsupportedValues
from sandbox.stacks import load_stacks

CONFIG_MAP = "nats/templates/config-map.yaml"


def _values() -> dict[str, dict[str, Any]]:
    stacks = load_stacks(REPO_STACKS, ["hub", "edge-a", "edge-b"])
    values = {"hub": hub_values(stacks.hub.settings)}
    for edge in stacks.edges:
        values[edge.name] = edge_values(edge.settings, stacks.facts)
    return values


@pytest.fixture(scope="module")
def chart() -> Any:
    helm_python = pytest.importorskip("helm_python")
    return helm_python.Chart.load(str(CHART_PATH))


def _chart_text(chart: Any, values: dict[str, Any]) -> str:
    rendered = chart.render(values, name="nats", namespace="ops-system")
    return yaml.safe_load(rendered[CONFIG_MAP])["data"]["nats.conf"]


@pytest.mark.chart
@pytest.mark.parametrize("stack", ["hub", "edge-a", "edge-b"])
def test_config_builder_output_is_byte_identical_to_the_charts_configmap(chart, stack):
    values = _values()[stack]
    assert server_config.render_text(server_config.chart_config(values)) == _chart_text(
        chart, values
    )


@pytest.mark.chart
@pytest.mark.parametrize("stack", ["hub", "edge-a", "edge-b"])
def test_a_rendered_config_reads_back_into_the_same_dict(chart, stack):
    values = _values()[stack]
    text = _chart_text(chart, values)
    assert server_config.parse_rendered(text) == server_config.chart_config(values)
    assert server_config.render_text(server_config.parse_rendered(text)) == text


def _flatten(conf: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in conf.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


@pytest.mark.parametrize("stack", ["hub", "edge-a", "edge-b"])
def test_loopback_rewrite_changes_only_addresses_ports_and_directories(stack):
    conf = server_config.chart_config(_values()[stack])
    local = LocalAddresses(
        client_port=41000,
        http_port=41001,
        leafnode_port=41002,
        cluster_port=41003,
        routes=("nats://127.0.0.1:41003", "nats://127.0.0.1:41103", "nats://127.0.0.1:41203"),
        store_dir="/tmp/x/jetstream",
        pid_file="/tmp/x/nats.pid",
    )
    before, after = _flatten(conf), _flatten(server_config.localize(conf, local))
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= LOCALIZED_KEYS
    assert after["host"] == "127.0.0.1"
    assert after["server_name"] == "<< $SERVER_NAME >>"


@pytest.mark.parametrize("stack", ["hub", "edge-a", "edge-b"])
def test_every_password_in_a_config_is_an_environment_reference(stack):
    text = server_config.render_text(server_config.chart_config(_values()[stack]))
    passwords = re.findall(r'"password": ([^,\n]+)', text)
    assert passwords
    assert all(re.fullmatch(r"\$[A-Z_]+", p) for p in passwords), passwords
    urls = re.findall(r'"urls": \[\s*([^\]]+?)\s*\]', text)
    assert all(re.fullmatch(r"\$HUB_(SYS|APP)_URL", u) for u in urls), urls


def test_server_names_follow_the_charts_prefix_and_pod_names():
    values = _values()
    assert server_config.server_names(values["hub"], "nats", 3) == ["nats-0", "nats-1", "nats-2"]
    assert server_config.server_names(values["edge-a"], "nats", 1) == ["edge-a-nats-0"]
    assert chart_fullname("ops") == "ops-nats"


def test_chart_values_local_mode_does_not_mirror_are_refused():
    values = _values()["hub"]
    with pytest.raises(UnsupportedValues, match=r"config\.websocket"):
        server_config.chart_config({"config": {**values["config"], "websocket": {"enabled": True}}})
    patched = {**values["config"], "cluster": {**values["config"]["cluster"], "patch": [{}]}}
    with pytest.raises(UnsupportedValues, match=r"config\.cluster\.patch"):
        server_config.chart_config({"config": patched})
