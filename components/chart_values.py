"""Settings -> values for the ``nats`` Helm chart 1.2.4 (pure data, no Pulumi).

The chart's typed keys are used wherever the chart models a setting; ``merge`` only
carries what it does not (accounts, leafnode authorization and remotes, domains).
Passwords appear only as ``<< $VAR >>`` references, so these values are safe to show,
diff and store, and are known at preview time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components import credentials as creds
from components.settings import BufferSettings, ImagesSettings, JetStreamSettings, StackSettings

CLIENT_PORT = 4222
LEAFNODE_PORT = 7422

# Chart 1.2.4 labels its StatefulSet pods with these; the NodePort Service selects them.
COMPONENT_LABEL = "nats"


@dataclass(frozen=True)
class HubFacts:
    """What an edge learns from the hub stack's outputs (all non-secret)."""

    stream_name: str
    stream_subjects: tuple[str, ...]
    credentials_rotation: str


def pod_selector(release_name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "nats",
        "app.kubernetes.io/instance": release_name,
        "app.kubernetes.io/component": COMPONENT_LABEL,
    }


def accounts(*, app_jetstream: bool) -> dict[str, Any]:
    """SYS and APP accounts with their client users (the leaf-only users live elsewhere)."""
    app: dict[str, Any] = {"users": [_user(creds.APP)]}
    if app_jetstream:
        app["jetstream"] = "enabled"
    return {
        "accounts": {creds.SYSTEM_ACCOUNT: {"users": [_user(creds.ADMIN)]}, creds.APP_ACCOUNT: app},
        "system_account": creds.SYSTEM_ACCOUNT,
    }


def hub_leafnode_authorization() -> dict[str, Any]:
    """Leafnode-only users: the hub's client port does not know them, edges know only them."""
    users = [{**_user(c), "account": c.account} for c in creds.HUB_CREDENTIALS if c.leaf_only]
    return {"authorization": {"users": users}}


def edge_remotes(*, buffered: bool, subjects: tuple[str, ...]) -> list[dict[str, Any]]:
    """One remote per account; a buffered edge keeps ``subjects`` off the APP link both ways.

    deny_exports: the edge's events reach the hub only through the hub stream's source.
    deny_imports: otherwise the edge stream's interest pulls other edges' events in and
    the hub stores them twice.
    """
    remotes: list[dict[str, Any]] = []
    for remote in creds.EDGE_REMOTES:
        entry: dict[str, Any] = {"urls": [remote.url_ref], "account": remote.account}
        if buffered and remote.account == creds.APP_ACCOUNT:
            entry["deny_exports"] = list(subjects)
            entry["deny_imports"] = list(subjects)
        remotes.append(entry)
    return remotes


def hub_values(settings: StackSettings) -> dict[str, Any]:
    hub = settings.hub
    assert hub is not None, "hub_values needs role hub"
    config: dict[str, Any] = {
        "cluster": _cluster(hub.replicas, name=None),
        "jetstream": _jetstream(hub.jetstream, domain=hub.jetstream_domain),
        "leafnodes": {
            "enabled": True,
            "port": LEAFNODE_PORT,
            "merge": hub_leafnode_authorization(),
        },
        "merge": accounts(app_jetstream=True),
    }
    env = [c.env for c in creds.HUB_CREDENTIALS]
    return _common(settings, config, env, rotation=settings.credentials_rotation)


def edge_values(settings: StackSettings, hub: HubFacts) -> dict[str, Any]:
    edge = settings.edge
    assert edge is not None, "edge_values needs role edge"
    name = settings.edge_name
    buffer = edge.buffer
    config: dict[str, Any] = {
        # Pod names repeat on every cluster (nats-0); the prefix keeps server names unique.
        "serverNamePrefix": f"{name}-",
        "cluster": _cluster(edge.replicas, name=name),
        "leafnodes": {
            "enabled": True,
            "port": LEAFNODE_PORT,
            "merge": {
                # An edge only dials out; its listener (which the chart opens whenever
                # leafnodes are enabled) has no leaf users, so keep it off the network.
                "host": "127.0.0.1",
                "remotes": edge_remotes(buffered=buffer.enabled, subjects=hub.stream_subjects),
            },
        },
        "merge": accounts(app_jetstream=buffer.enabled),
    }
    if buffer.enabled:
        config["jetstream"] = _jetstream(_buffer_store(buffer), domain=name)
    env = [c.env for c in creds.EDGE_CREDENTIALS] + [r.env for r in creds.EDGE_REMOTES]
    # The edge's pods must roll when its own or the hub's passwords rotate.
    rotation = f"{settings.credentials_rotation}/{hub.credentials_rotation}"
    values = _common(settings, config, env, rotation=rotation)
    values["service"] = {"ports": {"leafnodes": {"enabled": False}}}
    return values


def _user(credential: creds.Credential) -> dict[str, str]:
    return {"user": credential.user, "password": credential.password_ref}


def _cluster(replicas: int, *, name: str | None) -> dict[str, Any]:
    if replicas == 1:
        return {"enabled": False}
    cluster: dict[str, Any] = {"enabled": True, "replicas": replicas}
    if name:
        # The chart names the cluster after the StatefulSet, the same on every site;
        # a leaf whose cluster name equals the hub's is refused.
        cluster["merge"] = {"name": name}
    return cluster


def _jetstream(store: JetStreamSettings, *, domain: str) -> dict[str, Any]:
    file_store = store.file_store
    values: dict[str, Any] = {
        "enabled": True,
        "memoryStore": {
            "enabled": store.memory_store is not None,
            "maxSize": store.memory_store if store.memory_store is not None else "0",
        },
        "fileStore": {"enabled": file_store.enabled},
        "merge": {"domain": domain},
    }
    if file_store.enabled:
        pvc: dict[str, Any] = {"enabled": True, "size": file_store.size}
        if file_store.storage_class_name:
            pvc["storageClassName"] = file_store.storage_class_name
        values["fileStore"]["pvc"] = pvc
    return values


def _buffer_store(buffer: BufferSettings) -> JetStreamSettings:
    file_store = buffer.storage == "file"
    return JetStreamSettings(
        memory_store=None if file_store else buffer.store_size,
        file_store={
            "enabled": file_store,
            "size": buffer.store_size,
            "storage_class_name": buffer.storage_class_name,
        },
    )


def _common(
    settings: StackSettings, config: dict[str, Any], env: list[str], *, rotation: str
) -> dict[str, Any]:
    images: ImagesSettings = settings.images
    return {
        "config": config,
        "container": {
            "image": _image(images.nats),
            "env": creds.secret_env(creds.secret_name(settings.release_name), env),
        },
        "reloader": {"enabled": True, "image": _image(images.reloader)},
        "natsBox": {
            "container": {
                "image": _image(images.nats_box),
                # The runbook's daily commands run in nats-box: `nats sub "ops.>"` works as
                # app out of the box; admin commands add --user admin --password $ADMIN_PASSWORD.
                "env": {
                    "NATS_USER": creds.APP.user,
                    "NATS_PASSWORD": _secret_key(settings.release_name, creds.APP.env),
                    creds.ADMIN.env: _secret_key(settings.release_name, creds.ADMIN.env),
                },
            }
        },
        "podTemplate": {
            "merge": {"metadata": {"annotations": {"ops-nats/credentials-rotation": rotation}}}
        },
    }


def _secret_key(release_name: str, key: str) -> dict[str, object]:
    return creds.secret_key_ref(creds.secret_name(release_name), key)


def _image(image: Any) -> dict[str, str]:
    return {"repository": image.repository, "tag": image.tag}


def nodeport_service_spec(release_name: str, ports: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """A NodePort Service spec; ``ports`` maps the pod's named port to (port, nodePort)."""
    return {
        "type": "NodePort",
        "selector": pod_selector(release_name),
        "ports": [
            {
                "name": name,
                "port": port,
                "targetPort": name,
                "nodePort": node_port,
                "protocol": "TCP",
            }
            for name, (port, node_port) in ports.items()
        ],
    }
