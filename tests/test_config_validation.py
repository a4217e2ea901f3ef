"""Bad stack files fail before any resource is declared, with the key, the value and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from components.edge import EdgeNotAdmittedError, check_admission
from components.settings import ConfigError, load_settings

HUB: dict[str, Any] = {"ops-nats:role": "hub", "ops-nats:hub": {"publicHost": "10.0.0.5"}}
EDGE: dict[str, Any] = {"ops-nats:role": "edge", "ops-nats:edge": {"hubStack": "org/ops-nats/hub"}}


def hub_with(**changes: Any) -> dict[str, Any]:
    config = {"ops-nats:role": "hub", "ops-nats:hub": {"publicHost": "10.0.0.5"}}
    for key, value in changes.items():
        if key == "hub":
            config["ops-nats:hub"] = {**config["ops-nats:hub"], **value}
        else:
            config[f"ops-nats:{key}"] = value
    return config


def error_for(config: dict[str, Any], stack: str = "hub") -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(config, stack)
    return str(raised.value)


def test_minimal_hub_takes_the_seed_defaults() -> None:
    settings = load_settings(HUB, "hub")
    assert settings.namespace == "ops-system"
    assert settings.release_name == "nats"
    assert settings.chart.version == "1.2.4"
    assert settings.hub is not None
    assert settings.hub.replicas == 3
    assert (settings.hub.node_ports.client, settings.hub.node_ports.leafnodes) == (32223, 32222)
    assert settings.stream.name == "ops" and settings.stream.subjects == ["ops.>"]


def test_unknown_role_is_refused_with_the_choices() -> None:
    message = error_for({"ops-nats:role": "leaf"})
    assert "ops-nats:role = 'leaf'" in message
    assert "'hub' or 'edge'" in message


def test_hub_without_public_host_says_what_to_set() -> None:
    message = error_for({"ops-nats:role": "hub", "ops-nats:hub": {}})
    assert "ops-nats:hub.publicHost" in message and "missing" in message


def test_hub_role_without_hub_block_says_what_to_set() -> None:
    assert "set hub.publicHost" in error_for({"ops-nats:role": "hub"})


def test_public_host_with_a_scheme_or_port_is_refused() -> None:
    message = error_for(hub_with(hub={"publicHost": "nats://10.0.0.5:32222"}))
    assert "ops-nats:hub.publicHost = 'nats://10.0.0.5:32222'" in message
    assert "no scheme, port" in message


def test_file_stream_on_a_hub_without_file_store_is_refused() -> None:
    """Runbook defect 2: a file-storage stream on a memory-only hub fails at creation."""
    message = error_for(
        hub_with(hub={"jetstream": {"fileStore": {"enabled": False}}}, stream={"storage": "file"})
    )
    assert "stream.storage is file" in message
    assert "enable the file store or set stream.storage: memory" in message


def test_memory_stream_on_a_hub_without_memory_store_is_refused() -> None:
    message = error_for(
        hub_with(hub={"jetstream": {"memoryStore": None}}, stream={"storage": "memory"})
    )
    assert "stream.storage is memory" in message


def test_more_stream_replicas_than_hub_servers_is_refused() -> None:
    message = error_for(hub_with(hub={"replicas": 1}, stream={"replicas": 3}))
    assert "stream.replicas 3 is more than hub.replicas 1" in message


def test_stream_replicas_below_one_is_refused() -> None:
    message = error_for(hub_with(stream={"replicas": 0}))
    assert "ops-nats:stream.replicas = 0" in message


def test_two_hub_servers_cannot_keep_a_jetstream_quorum() -> None:
    assert "use 1 (no cluster) or 3 or more" in error_for(hub_with(hub={"replicas": 2}))


@pytest.mark.parametrize("port", [80, 29999, 32768])
def test_node_ports_outside_the_kubernetes_range_are_refused(port: int) -> None:
    message = error_for(hub_with(hub={"nodePorts": {"client": port}}))
    assert f"ops-nats:hub.nodePorts.client = {port}" in message
    assert "30000-32767" in message


def test_equal_node_ports_are_refused() -> None:
    message = error_for(hub_with(hub={"nodePorts": {"client": 32000, "leafnodes": 32000}}))
    assert "both 32000" in message and "different ports" in message


def test_duplicate_edge_names_are_refused() -> None:
    """Runbook defect 6: server_name uniqueness was a comment; now it is a check."""
    message = error_for(hub_with(hub={"edges": ["edge-a", {"name": "edge-a", "buffered": True}]}))
    assert "edge 'edge-a' is listed twice" in message


@pytest.mark.parametrize("name", ["Edge_A", "edge.a", "-edge", "e" * 41])
def test_edge_names_must_be_dns_safe(name: str) -> None:
    message = error_for({**EDGE, "ops-nats:edge": {"hubStack": "o/p/hub", "serverName": name}}, "e")
    assert "ops-nats:edge.serverName" in message and "not DNS-safe" in message


def test_an_edge_stack_name_that_is_not_dns_safe_is_refused() -> None:
    """serverName defaults to the stack name, so the stack name itself is checked."""
    assert "not DNS-safe" in error_for(EDGE, "Edge_Cluster_1")


def test_edge_server_name_defaults_to_the_stack_name() -> None:
    assert load_settings(EDGE, "edge-beijing").edge_name == "edge-beijing"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("maxAge", "7 days", "expected a duration like 168h"),
        ("duplicateWindow", "2x", "expected a duration like 168h"),
        ("maxBytes", "lots", "expected a size like 1Gi"),
    ],
)
def test_unparsable_sizes_and_durations_are_refused(key: str, value: str, expected: str) -> None:
    message = error_for(hub_with(stream={key: value}))
    assert f"ops-nats:stream.{key} = {value!r}" in message and expected in message


def test_unparsable_jetstream_size_is_refused() -> None:
    message = error_for(hub_with(hub={"jetstream": {"memoryStore": "1 gigabyte"}}))
    assert "ops-nats:hub.jetstream.memoryStore" in message


@pytest.mark.parametrize("subject", ["ops.>.x", "ops..x", "ops x", ""])
def test_invalid_subjects_are_refused(subject: str) -> None:
    assert "ops-nats:stream.subjects" in error_for(hub_with(stream={"subjects": [subject]}))


def test_edge_without_hub_stack_says_what_to_set() -> None:
    message = error_for({"ops-nats:role": "edge", "ops-nats:edge": {}}, "edge-a")
    assert "ops-nats:edge.hubStack" in message and "missing" in message


def test_hub_stack_must_be_fully_qualified() -> None:
    message = error_for({"ops-nats:role": "edge", "ops-nats:edge": {"hubStack": "hub"}}, "e")
    assert "<organization>/<project>/<stack>" in message


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({**HUB, "ops-nats:hubb": {}}, "ops-nats:hubb"),
        (hub_with(hub={"replica": 3}), "ops-nats:hub.replica"),
        (hub_with(stream={"maxage": "1h"}), "ops-nats:stream.maxage"),
    ],
)
def test_unknown_keys_are_reported_as_typos(config: dict[str, Any], key: str) -> None:
    message = error_for(config)
    assert key in message and "unknown key" in message


def test_all_problems_are_reported_at_once() -> None:
    message = error_for(hub_with(hub={"nodePorts": {"client": 1}}, stream={"maxAge": "x"}))
    assert "nodePorts.client" in message and "stream.maxAge" in message


def test_secret_config_values_are_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**HUB, "ops-nats:role": "s3cr3t"}, "hub", secret_keys={"ops-nats:role"})
    assert "s3cr3t" not in str(raised.value) and "[secret]" in str(raised.value)


def test_buffered_edge_needs_a_reachable_client_address() -> None:
    config = {**EDGE, "ops-nats:edge": {"hubStack": "o/p/hub", "buffer": {"enabled": True}}}
    assert "buffer.enabled needs publicHost" in error_for(config, "edge-a")


def test_buffer_larger_than_its_store_is_refused() -> None:
    edge = {
        "hubStack": "o/p/hub",
        "publicHost": "e",
        "buffer": {"enabled": True, "maxBytes": "5Gi"},
    }
    assert "raise storeSize or lower maxBytes" in error_for({**EDGE, "ops-nats:edge": edge}, "e")


def test_edge_missing_from_the_hub_list_is_refused() -> None:
    with pytest.raises(EdgeNotAdmittedError, match=r"add it to ops-nats:hub\.edges"):
        check_admission("edge-c", False, ["edge-a", "edge-b"], ["edge-a"])


def test_edge_buffering_must_match_the_hub_list() -> None:
    with pytest.raises(EdgeNotAdmittedError, match="list it with buffered: true"):
        check_admission("edge-b", True, ["edge-a", "edge-b"], ["edge-a"])
    with pytest.raises(EdgeNotAdmittedError, match="list it without buffered: true"):
        check_admission("edge-a", False, ["edge-a", "edge-b"], ["edge-a"])


def test_two_server_buffered_edge_cannot_keep_a_quorum() -> None:
    edge = {"hubStack": "o/p/hub", "publicHost": "e", "replicas": 2, "buffer": {"enabled": True}}
    assert "use 1 or 3" in error_for({**EDGE, "ops-nats:edge": edge}, "e")


def test_an_edge_named_like_the_hub_cluster_is_refused() -> None:
    assert "rename the edge" in error_for(hub_with(hub={"edges": ["nats"]}))
    # The chart appends -nats to a release name without it: release ops -> cluster ops-nats.
    message = error_for(hub_with(releaseName="ops", hub={"edges": ["ops-nats"]}))
    assert "'ops-nats', the hub's own cluster name" in message
