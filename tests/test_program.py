"""`pulumi up` on the example stacks, under mocks: what gets declared, and what leaks.

The hub run's real outputs feed the edge runs' StackReference, so the chain an operator
runs (hub first, then each edge) is the chain tested.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pulumi
import pytest

from components import credentials as creds
from components.chart_values import HubFacts, edge_values, hub_values, pod_selector
from components.settings import load_settings
from components.stream_config import edge_buffer_stream_config, hub_stream_config
from tests.pulumi_harness import (
    ProgramRun,
    example_stacks,
    hub_stack_outputs,
    is_secret,
    run_program,
    stack_config,
)

CHART = "kubernetes:helm.sh/v4:Chart"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"
PASSWORD = "random:index/randomPassword:RandomPassword"
STREAM = "pulumi-python:dynamic/ops-nats:JetStreamStream"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@cache
def hub_run() -> ProgramRun:
    return run_program("hub")


def edge_run(stack: str, config: dict[str, Any] | None = None) -> ProgramRun:
    outputs, secret = hub_stack_outputs(hub_run())
    return run_program(stack, config, hub_outputs=outputs, hub_secret_outputs=secret)


def stream_resources(run: ProgramRun) -> list[dict[str, Any]]:
    return [r.inputs for r in run.of_type(STREAM)]


def leaked(run: ProgramRun, inputs: Any) -> list[str]:
    text = json.dumps(inputs, default=str)
    return [p for p in run.passwords if p in text]


def test_example_stacks_cover_a_hub_and_both_kinds_of_edge() -> None:
    assert example_stacks("hub") == ["hub"]
    assert example_stacks("edge") == ["edge-a", "edge-b"]


# --- hub -----------------------------------------------------------------------------------


def test_hub_installs_nats_chart_1_2_4_as_release_nats_in_ops_system() -> None:
    chart = hub_run().one(CHART).inputs
    assert chart["chart"] == "nats"
    assert chart["version"] == "1.2.4"
    assert chart["repositoryOpts"]["repo"] == "https://nats-io.github.io/k8s/helm/charts/"
    assert chart["name"] == "nats"
    assert chart["namespace"] == "ops-system"


def test_hub_chart_values_are_the_value_builders_output() -> None:
    settings = load_settings(stack_config("hub"), "hub")
    assert hub_run().one(CHART).inputs["values"] == hub_values(settings)


def test_hub_uses_the_private_mirror_images_of_the_seed() -> None:
    values = hub_run().one(CHART).inputs["values"]
    mirror = "registry.cn-beijing.aliyuncs.com/opshub/"
    assert values["container"]["image"] == {"repository": mirror + "nats", "tag": "2.10.20-alpine"}
    assert values["natsBox"]["container"]["image"]["repository"] == mirror + "nats-box"
    assert values["reloader"]["image"]["tag"] == "0.15.1"


def test_air_gapped_hub_installs_the_chart_from_a_local_path() -> None:
    config = {**stack_config("hub"), "ops-nats:chart": {"path": "./charts/nats-1.2.4.tgz"}}
    chart = run_program("hub", config).one(CHART).inputs
    assert chart["chart"] == "./charts/nats-1.2.4.tgz"
    assert "repositoryOpts" not in chart and "version" not in chart


def test_hub_exposes_clients_and_leafnodes_on_its_own_nodeport_service() -> None:
    """Runbook defect 4: no `kubectl patch` of the chart's Service, which upgrades revert."""
    service = hub_run().one(SERVICE).inputs
    assert service["metadata"]["name"] == "nats-nodeport"
    assert service["metadata"]["namespace"] == "ops-system"
    spec = service["spec"]
    assert spec["type"] == "NodePort"
    assert spec["selector"] == pod_selector("nats")
    ports = {p["name"]: (p["port"], p["targetPort"], p["nodePort"]) for p in spec["ports"]}
    assert ports == {"nats": (4222, "nats", 32223), "leafnodes": (7422, "leafnodes", 32222)}


def test_hub_generates_a_password_per_user_rotated_by_config() -> None:
    passwords = hub_run().of_type(PASSWORD)
    assert sorted(p.name for p in passwords) == sorted(
        f"ops-nats-credentials-{c.user}" for c in creds.HUB_CREDENTIALS
    )
    for password in passwords:
        assert password.inputs["length"] == 32
        # Letters only: a password NATS would lex as a number or size breaks the config.
        assert password.inputs["special"] is False and password.inputs["numeric"] is False
        assert password.inputs["keepers"] == {"rotation": "1"}


def test_hub_secret_hands_every_password_to_the_servers() -> None:
    run = hub_run()
    secret = run.one(SECRET).inputs
    assert secret["metadata"] == {
        "name": "nats-credentials",
        "namespace": "ops-system",
        "labels": {"app.kubernetes.io/managed-by": "ops-nats"},
    }
    assert sorted(secret["stringData"]) == sorted(c.env for c in creds.HUB_CREDENTIALS)
    assert sorted(secret["stringData"].values()) == sorted(run.passwords)
    assert is_secret(run.one(SECRET).raw_inputs["stringData"])


def test_no_password_outside_the_secret_and_the_stream_connection() -> None:
    """Runbook defect 1: passwords in values, ConfigMaps and URLs. Only two places hold them."""
    run = hub_run()
    for resource in run.resources:
        inputs = dict(resource.inputs)
        if resource.type == SECRET:
            continue
        if resource.type == STREAM:
            inputs.pop("password")  # the stream resource logs in as app (a secret input)
            inputs.pop("__provider", None)
        assert leaked(run, inputs) == [], f"{resource.type} {resource.name} holds a password"


def test_hub_declares_the_stream_of_the_stack_file() -> None:
    run = hub_run()
    settings = load_settings(stack_config("hub"), "hub")
    (stream,) = stream_resources(run)
    assert stream["config"] == hub_stream_config(settings.stream, ["edge-a"])
    assert stream["config"]["storage"] == "file" and stream["config"]["num_replicas"] == 3
    assert stream["servers"] == ["nats://hub.ops.example.internal:32223"]
    assert stream["user"] == "app"
    assert stream["password"] in run.passwords
    assert is_secret(run.of_type(STREAM)[0].raw_inputs["password"])


def test_hub_stream_sources_each_buffered_edge_through_its_domain() -> None:
    (stream,) = stream_resources(hub_run())
    assert stream["config"]["sources"] == [
        {"name": "ops", "external": {"api": "$JS.edge-a.API", "deliver": ""}}
    ]


def test_hub_outputs_what_edges_and_operators_read() -> None:
    outputs = hub_run().outputs
    plain = {k: o.value for k, o in outputs.items() if not o.secret}
    assert plain == {
        "clientUrl": "nats://hub.ops.example.internal:32223",
        "leafnodeUrl": "nats://hub.ops.example.internal:32222",
        "jetstreamDomain": "hub",
        "edges": ["edge-a", "edge-b"],
        "bufferedEdges": ["edge-a"],
        "streamName": "ops",
        "streamSubjects": ["ops.>"],
        "credentialsRotation": "1",
        "adminUser": "admin",
        "appUser": "app",
        "leafSysUser": "leaf-sys",
        "leafAppUser": "leaf-app",
    }


def test_hub_passwords_are_secret_outputs_each_on_its_own() -> None:
    run = hub_run()
    secret = {k for k, o in run.outputs.items() if o.secret}
    assert secret == {"adminPassword", "appPassword", "leafSysPassword", "leafAppPassword"}
    assert sorted(run.outputs[k].value for k in secret) == sorted(run.passwords)


# --- edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_reads_the_hub_through_a_stack_reference(stack: str) -> None:
    reference = edge_run(stack).one(STACK_REFERENCE).inputs
    assert reference["name"] == "organization/ops-nats/hub"


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_chart_values_come_from_its_settings_and_the_hub(stack: str) -> None:
    settings = load_settings(stack_config(stack), stack)
    facts = HubFacts("ops", ("ops.>",), "1")
    assert edge_run(stack).one(CHART).inputs["values"] == edge_values(settings, facts)


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_server_names_are_prefixed_with_the_edge_name(stack: str) -> None:
    values = edge_run(stack).one(CHART).inputs["values"]
    assert values["config"]["serverNamePrefix"] == f"{stack}-"


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_remotes_carry_the_hub_leaf_only_credentials_in_its_secret(stack: str) -> None:
    """Runbook defect 5: edges no longer get the hub's admin and app passwords."""
    hub = hub_run().outputs
    secret = edge_run(stack).one(SECRET).inputs["stringData"]
    host = "hub.ops.example.internal:32222"
    assert secret["HUB_SYS_URL"] == f"nats://leaf-sys:{hub['leafSysPassword'].value}@{host}"
    assert secret["HUB_APP_URL"] == f"nats://leaf-app:{hub['leafAppPassword'].value}@{host}"
    # The hub's secret outputs stay secret through the stack reference into the Secret.
    assert is_secret(edge_run(stack).one(SECRET).raw_inputs["stringData"])
    for hub_only in ("adminPassword", "appPassword"):
        assert hub[hub_only].value not in json.dumps(secret)


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_chart_values_hold_no_password(stack: str) -> None:
    run = edge_run(stack)
    hub_passwords = [o.value for o in hub_run().outputs.values() if o.secret]
    text = json.dumps(run.one(CHART).inputs)
    assert not [p for p in run.passwords + hub_passwords if p in text]


@pytest.mark.parametrize("stack", ["edge-a", "edge-b"])
def test_edge_passwords_are_secret_outputs(stack: str) -> None:
    run = edge_run(stack)
    assert {k for k, o in run.outputs.items() if o.secret} == {"adminPassword", "appPassword"}
    assert run.outputs["serverName"].value == stack
    assert run.outputs["hubLeafnodeUrl"].value == "nats://hub.ops.example.internal:32222"


def test_buffered_edge_declares_its_local_stream_through_its_client_nodeport() -> None:
    run = edge_run("edge-a")
    settings = load_settings(stack_config("edge-a"), "edge-a")
    assert settings.edge is not None
    (stream,) = stream_resources(run)
    assert stream["config"] == edge_buffer_stream_config("ops", ["ops.>"], settings.edge.buffer)
    assert stream["servers"] == ["nats://edge-a.ops.example.internal:32223"]
    service = run.one(SERVICE).inputs["spec"]
    assert [(p["port"], p["nodePort"]) for p in service["ports"]] == [(4222, 32223)]


def test_plain_edge_declares_no_stream_and_no_service() -> None:
    run = edge_run("edge-b")
    assert stream_resources(run) == [] and run.of_type(SERVICE) == []


def test_edge_not_listed_on_the_hub_fails_with_the_fix() -> None:
    config = {**stack_config("edge-b"), "ops-nats:edge": {"hubStack": "organization/ops-nats/hub"}}
    with pytest.raises(Exception, match="not in the hub's edges"):
        edge_run("edge-c", config)


def test_bad_stack_file_fails_before_any_resource_with_the_message() -> None:
    config = {**stack_config("hub"), "ops-nats:hub": {"publicHost": "h", "replicas": 2}}
    with pytest.raises(pulumi.RunError, match=r"stream\.replicas 3 is more than") as raised:
        run_program("hub", config)
    assert "ops-nats" in str(raised.value)


def test_misspelt_top_level_key_fails_the_program() -> None:
    config = {**stack_config("hub"), "ops-nats:strem": {"replicas": 1}}
    with pytest.raises(pulumi.RunError, match="ops-nats:strem: unknown key"):
        run_program("hub", config)


def test_nats_box_logs_in_as_app_with_the_generated_password() -> None:
    """The runbook's `nats sub "ops.>"` in nats-box needs credentials; none are typed."""
    env = hub_run().one(CHART).inputs["values"]["natsBox"]["container"]["env"]
    assert env["NATS_USER"] == "app"
    assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "nats-credentials",
        "key": "APP_PASSWORD",
    }
