"""Chart values -> the ``nats.conf`` a server gets (pure data, no I/O).

``chart_config`` mirrors what chart ``nats`` 1.2.4 renders into its ConfigMap for the
value keys this program uses (``files/config/*.yaml`` + ``config.*.merge`` +
``config.merge``); ``render_text`` formats it the way the chart's ``nats.formatConfig``
does (pretty JSON, ``"<< X >>"`` unquoted). A test compares both with the real chart, so
local mode runs exactly what Kubernetes runs.

``localize`` then rewrites only what differs on a laptop: listen addresses (127.0.0.1),
ports (free ones), route URLs, the pid file and the JetStream directory. Passwords stay
``$VAR`` references; the process environment supplies them, as the pod's does.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from components.settings import chart_fullname

LOOPBACK = "127.0.0.1"

# What ``localize`` may change, and nothing else: addresses, ports, routes, files.
LOCALIZED_KEYS = frozenset(
    {
        "host",
        "port",
        "http_port",
        "pid_file",
        "leafnodes.host",
        "leafnodes.port",
        "cluster.host",
        "cluster.port",
        "cluster.routes",
        "jetstream.store_dir",
    }
)

# The chart's defaults (values.yaml) for the keys mirrored here.
CHART_DEFAULTS: dict[str, Any] = {
    "config": {
        "cluster": {"enabled": False, "port": 6222, "replicas": 3, "merge": {}, "patch": []},
        "jetstream": {
            "enabled": False,
            "fileStore": {
                "enabled": True,
                "dir": "/data",
                "pvc": {"enabled": True, "size": "10Gi"},
                "maxSize": None,
            },
            "memoryStore": {"enabled": False, "maxSize": "1Gi"},
            "merge": {},
            "patch": [],
        },
        "nats": {"port": 4222},
        "leafnodes": {"enabled": False, "port": 7422, "merge": {}, "patch": []},
        "monitor": {"enabled": True, "port": 8222},
        "serverNamePrefix": "",
        "merge": {},
        "patch": [],
    }
}

# Value keys under ``config`` whose template this module mirrors; anything else would
# change nats.conf in ways local mode does not reproduce, so it is refused.
_MIRRORED = frozenset(
    {"cluster", "jetstream", "nats", "leafnodes", "monitor", "serverNamePrefix", "merge", "patch"}
)
_UNQUOTE_RE = re.compile(r'"<<\s+(.*)\s+>>"')
_INCLUDE_RE = re.compile(r'".*\$include": "(.*)",?')
# Inverse of the unquoting, for reading a rendered nats.conf back: bare $VARs and sizes.
_BARE_VALUE_RE = re.compile(
    r'(?m)(^\s*(?:"[^"]*":\s*)?)(\$[A-Za-z_][A-Za-z0-9_]*|\d+[A-Za-z]+)(,?)$'
)


class UnsupportedValues(ValueError):
    """Chart values that local mode cannot mirror; the message names the key."""


def server_names(values: dict[str, Any], release_name: str, replicas: int) -> list[str]:
    """``SERVER_NAME`` of each pod: ``serverNamePrefix`` + pod name (``nats-0``...)."""
    prefix = values.get("config", {}).get("serverNamePrefix") or ""
    base = chart_fullname(release_name)
    return [f"{prefix}{base}-{ordinal}" for ordinal in range(replicas)]


def chart_config(values: dict[str, Any], *, release_name: str = "nats") -> dict[str, Any]:
    """The nats.conf dict chart 1.2.4 renders for ``values`` (release ``release_name``)."""
    _check_mirrored(values)
    config = merge_overwrite(copy.deepcopy(CHART_DEFAULTS), copy.deepcopy(values))["config"]
    name = chart_fullname(release_name)
    conf: dict[str, Any] = {
        "server_name": "<< $SERVER_NAME >>",
        "lame_duck_grace_period": "10s",
        "lame_duck_duration": "30s",
        "pid_file": "/var/run/nats/nats.pid",
        "port": config["nats"]["port"],
    }
    leafnodes = config["leafnodes"]
    if leafnodes["enabled"]:
        conf["leafnodes"] = merge_overwrite(
            {"port": leafnodes["port"], "no_advertise": True}, leafnodes["merge"]
        )
    cluster = config["cluster"]
    if cluster["enabled"]:
        routes = [
            f"nats://{name}-{i}.{name}-headless:{cluster['port']}"
            for i in range(int(cluster["replicas"]))
        ]
        conf["cluster"] = merge_overwrite(
            {"name": name, "port": cluster["port"], "no_advertise": True, "routes": routes},
            cluster["merge"],
        )
    if config["monitor"]["enabled"]:
        conf["http_port"] = config["monitor"]["port"]
    jetstream = config["jetstream"]
    if jetstream["enabled"]:
        conf["jetstream"] = merge_overwrite(_jetstream(jetstream), jetstream["merge"])
    return merge_overwrite(conf, config["merge"])


def _jetstream(jetstream: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    memory = jetstream["memoryStore"]
    if memory["enabled"]:
        if memory.get("maxSize"):
            out["max_memory_store"] = f"<< {memory['maxSize']} >>"
    else:
        out["max_memory_store"] = 0
    file_store = jetstream["fileStore"]
    if file_store["enabled"]:
        out["store_dir"] = file_store["dir"]
        if file_store.get("maxSize"):
            out["max_file_store"] = f"<< {file_store['maxSize']} >>"
        elif file_store["pvc"]["enabled"]:
            out["max_file_store"] = f"<< {file_store['pvc']['size']} >>"
    else:
        out["max_file_store"] = 0
    return out


def _check_mirrored(values: dict[str, Any]) -> None:
    config = values.get("config", {})
    for key, value in config.items():
        if key not in _MIRRORED:
            raise UnsupportedValues(
                f"chart value config.{key} is not mirrored by local mode; "
                "extend sandbox/server_config.py (and its chart-equality test) first"
            )
        if isinstance(value, dict) and value.get("patch"):
            raise UnsupportedValues(
                f"chart value config.{key}.patch (a JSON patch) is not mirrored by local "
                f"mode; use config.{key}.merge instead"
            )
    if config.get("patch"):
        raise UnsupportedValues("chart value config.patch is not mirrored by local mode")
    if config.get("monitor", {}).get("tls", {}).get("enabled"):
        raise UnsupportedValues("chart value config.monitor.tls is not mirrored by local mode")


def merge_overwrite(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """Sprig's ``mergeOverwrite``: maps merge recursively, everything else is replaced."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_overwrite(dst[key], value)
        else:
            dst[key] = value
    return dst


def render_text(conf: dict[str, Any]) -> str:
    """The text the chart puts in ``nats.conf`` (``nats.formatConfig``), newline-terminated."""
    text = json.dumps(conf, indent=2, sort_keys=True, ensure_ascii=False)
    text = _INCLUDE_RE.sub(r"include \1;", text)
    return _UNQUOTE_RE.sub(r"\1", text) + "\n"


def parse_rendered(text: str) -> dict[str, Any]:
    """Read a rendered nats.conf back into the dict ``render_text`` took (bare values re-quoted).

    Used to boot configs rendered by the real chart and to compare them with ours.
    """
    return json.loads(_BARE_VALUE_RE.sub(r'\1"<< \2 >>"\3', text))


@dataclass(frozen=True)
class LocalAddresses:
    """Where one server listens on this machine, and where its files go."""

    client_port: int
    http_port: int
    leafnode_port: int | None = None
    cluster_port: int | None = None
    routes: tuple[str, ...] = ()  # nats://127.0.0.1:<cluster port> of every cluster member
    store_dir: str | None = None
    pid_file: str | None = None


def localize(conf: dict[str, Any], local: LocalAddresses) -> dict[str, Any]:
    """``conf`` with only addresses, ports and directories rewritten for loopback.

    The servers listen on 127.0.0.1 (the chart's default 0.0.0.0 is not wanted on a
    laptop), route to their peers' loopback cluster ports and keep their JetStream data
    and pid file under the state directory. Everything else is left as the chart made it.
    """
    out = copy.deepcopy(conf)
    out["host"] = LOOPBACK
    out["port"] = local.client_port
    if "http_port" in out:
        out["http_port"] = local.http_port  # the monitor listens on ``host`` as well
    if local.pid_file is not None:
        out["pid_file"] = local.pid_file
    if "leafnodes" in out:
        if local.leafnode_port is None:
            raise ValueError("the config listens for leafnodes but no leafnode port was given")
        out["leafnodes"].update(host=LOOPBACK, port=local.leafnode_port)
    if "cluster" in out:
        if local.cluster_port is None or not local.routes:
            raise ValueError("the config is clustered but no cluster port or routes were given")
        out["cluster"].update(host=LOOPBACK, port=local.cluster_port, routes=list(local.routes))
    if "jetstream" in out and "store_dir" in out["jetstream"]:
        if local.store_dir is None:
            raise ValueError("the config keeps JetStream files but no store_dir was given")
        out["jetstream"]["store_dir"] = local.store_dir
    elif "jetstream" in out and local.store_dir is not None:
        # Memory-only JetStream still writes its cluster (meta/raft) state to disk: without
        # a store_dir every local server would share nats-server's /tmp/nats/jetstream.
        out["jetstream"]["store_dir"] = local.store_dir
    return out


def route_url(cluster_port: int) -> str:
    return f"nats://{LOOPBACK}:{cluster_port}"
