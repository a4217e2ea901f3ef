"""Stack files -> validated settings of one hub and its edges (read files, no processes).

The same ``stacks/Pulumi.<stack>.yaml`` files ``pulumi up`` reads. Besides each stack's
own schema (``components.settings``), the rules that span stacks are checked here,
before anything starts: one hub, edge names unique (two servers sharing a name break
each other's connections), every edge listed in the hub's ``edges`` with the same
buffering, and every edge's ``hubStack`` naming the hub being booted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.chart_values import HubFacts
from components.settings import ConfigError, StackSettings, load_settings

STACK_FILE_PREFIX = "Pulumi."
STACK_FILE_SUFFIX = ".yaml"


class StackError(ValueError):
    """Stack files that cannot be booted together; the message names the fix."""


@dataclass(frozen=True)
class Stack:
    """One stack file: its name (``Pulumi.<name>.yaml``) and validated settings."""

    name: str
    path: Path
    settings: StackSettings


@dataclass(frozen=True)
class StackSet:
    """The hub stack and the edge stacks to boot with it, in command-line order."""

    hub: Stack
    edges: tuple[Stack, ...]

    @property
    def facts(self) -> HubFacts:
        """What each edge learns from the hub stack (as ``pulumi.StackReference`` would)."""
        stream = self.hub.settings.stream
        return HubFacts(
            stream_name=stream.name,
            stream_subjects=tuple(stream.subjects),
            credentials_rotation=self.hub.settings.credentials_rotation,
        )

    @property
    def edge_names(self) -> list[str]:
        return [edge.settings.edge_name for edge in self.edges]

    @property
    def buffered_edges(self) -> list[str]:
        return [e.settings.edge_name for e in self.edges if _buffered(e.settings)]


def available(stacks_dir: Path) -> dict[str, Path]:
    """Stack name -> file for every ``Pulumi.<name>.yaml`` in ``stacks_dir``."""
    if not stacks_dir.is_dir():
        raise StackError(
            f"stack directory {stacks_dir} does not exist; pass --stacks-dir with the "
            "directory that holds Pulumi.<stack>.yaml files"
        )
    found = {}
    for path in sorted(stacks_dir.glob(f"{STACK_FILE_PREFIX}*{STACK_FILE_SUFFIX}")):
        name = path.name.removeprefix(STACK_FILE_PREFIX).removesuffix(STACK_FILE_SUFFIX)
        found[name] = path
    return found


def load_stack(path: Path, name: str) -> Stack:
    """Read and validate one stack file; errors name the file and the key."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise StackError(f"cannot read stack file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise StackError(f"stack file {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise StackError(
            f"stack file {path} has no `config:` mapping; "
            "it should look like stacks/Pulumi.hub.yaml"
        )
    try:
        settings = load_settings(document["config"], name)
    except ConfigError as error:
        raise StackError(f"{path}: {error}") from None
    return Stack(name=name, path=path, settings=settings)


def load_stacks(stacks_dir: Path, names: Sequence[str] | None = None) -> StackSet:
    """The stacks ``names`` (all in ``stacks_dir`` when None), validated as one topology."""
    files = available(stacks_dir)
    wanted = list(names) if names else list(files)
    missing = [n for n in wanted if n not in files]
    if missing:
        known = ", ".join(files) or "none"
        raise StackError(
            f"no stack file for {', '.join(missing)} in {stacks_dir} (stacks found: {known}); "
            "fix --stacks or add Pulumi.<stack>.yaml"
        )
    if len(set(wanted)) != len(wanted):
        raise StackError(f"--stacks names a stack twice: {', '.join(wanted)}")
    return check_stack_set([load_stack(files[n], n) for n in wanted])


def check_stack_set(stacks: Sequence[Stack]) -> StackSet:
    """The cross-stack rules (pure): one hub, unique and known edges, matching buffering."""
    hubs = [s for s in stacks if s.settings.role == "hub"]
    if len(hubs) != 1:
        listed = ", ".join(s.name for s in hubs) or "none"
        raise StackError(
            f"local mode boots exactly one hub stack, got {len(hubs)} ({listed}); "
            "pass --stacks with one stack of role hub and any number of edges"
        )
    hub = hubs[0]
    assert hub.settings.hub is not None
    allowed = {e.name: e.buffered for e in hub.settings.hub.edges}
    edges = tuple(s for s in stacks if s.settings.role == "edge")
    owners: dict[str, str] = {}
    for stack in edges:
        name = stack.settings.edge_name
        if name in owners:
            raise StackError(
                f"edge stacks {owners[name]!r} and {stack.name!r} both use serverName {name!r}; "
                "NATS servers that share a name drop each other's connections; give "
                f"{stack.name!r} its own ops-nats:edge.serverName (and list it in the hub's edges)"
            )
        owners[name] = stack.name
        _check_edge(stack, hub, allowed)
    return StackSet(hub=hub, edges=edges)


def _check_edge(stack: Stack, hub: Stack, allowed: dict[str, bool]) -> None:
    edge = stack.settings.edge
    assert edge is not None
    name = stack.settings.edge_name
    hub_stack_name = edge.hub_stack.rsplit("/", 1)[-1]
    if hub_stack_name != hub.name:
        raise StackError(
            f"edge stack {stack.name!r} joins hub stack {edge.hub_stack!r} but the hub being "
            f"booted is {hub.name!r}; fix ops-nats:edge.hubStack or boot that hub"
        )
    if name not in allowed:
        raise StackError(
            f"edge {name!r} (stack {stack.name!r}) is not in the hub's ops-nats:hub.edges "
            f"({', '.join(allowed) or 'empty'}); add it there first"
        )
    if allowed[name] != _buffered(stack.settings):
        want = "buffered: true" if _buffered(stack.settings) else "no buffered flag"
        raise StackError(
            f"edge {name!r} has edge.buffer.enabled {_buffered(stack.settings)} but the hub "
            f"lists it with buffered {allowed[name]}; give it {want} in ops-nats:hub.edges "
            "(the hub stream sources exactly the buffered edges)"
        )


def _buffered(settings: StackSettings) -> bool:
    return settings.edge is not None and settings.edge.buffer.enabled
