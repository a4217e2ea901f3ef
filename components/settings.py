"""The whole ``ops-nats:`` configuration schema, validated before any resource exists.

Each field's description is the reference documentation of that key (the README's table
is generated from the same text). Cross-field rules live in model validators so that
one bad stack file yields one message naming the key, the value and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from components import units

PROJECT = "ops-nats"
CHART_REPOSITORY = "https://nats-io.github.io/k8s/helm/charts/"
CHART_VERSION = "1.2.4"
NODEPORT_RANGE = range(30000, 32768)


def _size(value: str | int) -> str | int:
    units.parse_size(value)
    return value


def _limit(value: str | int) -> str | int:
    units.parse_limit(value)
    return value


def _duration(value: str | int) -> str | int:
    units.parse_duration_ns(value)
    return value


def _dns_name(value: str) -> str:
    return units.check_dns_label(value)


Size = Annotated[str | int, AfterValidator(_size)]
Limit = Annotated[str | int, AfterValidator(_limit)]
Duration = Annotated[str | int, AfterValidator(_duration)]
DnsName = Annotated[str, AfterValidator(_dns_name)]
StorageKind = Literal["file", "memory"]


class Model(BaseModel):
    """Stack-file keys are camelCase; ``extra="forbid"`` turns a typo into an error."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ChartSettings(Model):
    repository: str = Field(
        CHART_REPOSITORY, description="Helm repository the `nats` chart is fetched from."
    )
    version: str = Field(
        CHART_VERSION, description="Chart version (the program is tested with 1.2.4)."
    )
    path: str | None = Field(
        None,
        description="Local chart directory or .tgz for air-gapped sites; replaces repository.",
    )


class ImageSettings(Model):
    repository: str = Field(description="Image repository, e.g. a private mirror.")
    tag: str = Field(description="Image tag.")


class ImagesSettings(Model):
    nats: ImageSettings = Field(
        ImageSettings(repository="nats", tag="2.10.20-alpine"), description="NATS server image."
    )
    nats_box: ImageSettings = Field(
        ImageSettings(repository="natsio/nats-box", tag="0.14.5"),
        description="nats-box image (the operator's shell with the `nats` CLI).",
    )
    reloader: ImageSettings = Field(
        ImageSettings(repository="natsio/nats-server-config-reloader", tag="0.15.1"),
        description="Config reloader sidecar image.",
    )


class NodePorts(Model):
    client: int = Field(32223, description="NodePort for NATS clients (container port 4222).")
    leafnodes: int = Field(32222, description="NodePort edges dial (container port 7422).")

    @field_validator("client", "leafnodes")
    @classmethod
    def _in_range(cls, port: int) -> int:
        if port not in NODEPORT_RANGE:
            raise ValueError(
                f"NodePort {port} is outside the Kubernetes range 30000-32767; pick a port in it"
            )
        return port

    @model_validator(mode="after")
    def _distinct(self) -> NodePorts:
        if self.client == self.leafnodes:
            raise ValueError(
                f"client and leafnodes NodePorts are both {self.client}; give them different ports"
            )
        return self


class FileStoreSettings(Model):
    enabled: bool = Field(True, description="Keep JetStream data on a PersistentVolumeClaim.")
    size: Size = Field("10Gi", description="PVC size, also the JetStream file store limit.")
    storage_class_name: str | None = Field(
        None, description="StorageClass of the PVC (cluster default when unset)."
    )


class JetStreamSettings(Model):
    memory_store: Size | None = Field(
        "1Gi", description="JetStream memory store limit; null disables the memory store."
    )
    file_store: FileStoreSettings = Field(
        FileStoreSettings(), description="JetStream file store on a PVC."
    )

    @model_validator(mode="after")
    def _some_store(self) -> JetStreamSettings:
        if self.memory_store is None and not self.file_store.enabled:
            raise ValueError(
                "JetStream has neither a memory store nor a file store; "
                "set memoryStore (e.g. 1Gi) or fileStore.enabled: true"
            )
        return self


class EdgeEntry(Model):
    name: DnsName = Field(description="The edge's serverName.")
    buffered: bool = Field(
        False,
        description="The edge keeps a local stream (edge.buffer.enabled); the hub stream "
        "sources it instead of receiving its events over core NATS.",
    )


def _edge_entry(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class HubSettings(Model):
    public_host: str = Field(
        description="Address (DNS name or IP of any node) that edges and operators dial "
        "for the NodePorts."
    )
    replicas: int = Field(3, ge=1, description="NATS servers in the hub cluster.")
    node_ports: NodePorts = Field(NodePorts(), description="NodePorts of the hub Service.")
    jetstream: JetStreamSettings = Field(JetStreamSettings(), description="Hub JetStream storage.")
    jetstream_domain: DnsName = Field(
        "hub",
        description="JetStream domain of the hub; set from day one so that adding a "
        "buffered edge never changes the hub's servers.",
    )
    edges: list[Annotated[EdgeEntry, Field()]] = Field(
        default_factory=list,
        description="Edges allowed to join: a name, or {name, buffered: true} for an edge "
        "with edge.buffer.enabled.",
    )

    @field_validator("public_host")
    @classmethod
    def _host(cls, host: str) -> str:
        if not host or any(c in host for c in " /@:"):
            raise ValueError(
                f"{host!r} is not a host name or IP address (no scheme, port or spaces); "
                "use the address of a node that edges can reach"
            )
        return host

    @field_validator("edges", mode="before")
    @classmethod
    def _entries(cls, edges: Any) -> Any:
        return [_edge_entry(e) for e in edges] if isinstance(edges, list) else edges

    @field_validator("edges")
    @classmethod
    def _unique(cls, edges: list[EdgeEntry]) -> list[EdgeEntry]:
        seen: set[str] = set()
        for edge in edges:
            if edge.name in seen:
                raise ValueError(
                    f"edge {edge.name!r} is listed twice; every edge needs a unique name "
                    "(NATS drops connections of servers that share a name)"
                )
            seen.add(edge.name)
        return edges

    @property
    def buffered_edges(self) -> list[str]:
        return [e.name for e in self.edges if e.buffered]


class StreamSettings(Model):
    name: str = Field("ops", description="Stream name.")
    subjects: list[str] = Field(["ops.>"], min_length=1, description="Subjects the stream stores.")
    storage: StorageKind = Field("file", description="`file` (survives restarts) or `memory`.")
    replicas: int = Field(1, ge=1, le=5, description="Stream replicas (3 in production).")
    max_age: Duration = Field("168h", description="Drop events older than this; 0 keeps forever.")
    max_msgs: int = Field(-1, ge=-1, description="Maximum events kept; -1 unlimited.")
    max_bytes: Limit = Field(-1, description="Maximum bytes kept (e.g. 5Gi); -1 unlimited.")
    max_msg_size: Limit = Field(-1, description="Largest event accepted; -1 unlimited.")
    discard: Literal["old", "new"] = Field("old", description="What goes when full.")
    retention: Literal["limits", "interest", "workqueue"] = Field(
        "limits", description="Retention policy."
    )
    duplicate_window: Duration = Field(
        "2m", description="Window in which a repeated Nats-Msg-Id is dropped."
    )
    no_ack: bool = Field(False, description="Do not acknowledge publishes (the seed acks).")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ValueError(
                f"stream name {name!r} may only hold letters, digits, '-' and '_' (1-64)"
            )
        return name

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, subjects: list[str]) -> list[str]:
        return [units.check_subject(s) for s in subjects]


class BufferSettings(Model):
    enabled: bool = Field(
        False, description="Store-and-forward: keep events in a local stream while the hub is away."
    )
    storage: StorageKind = Field("file", description="Local stream storage.")
    store_size: Size = Field("2Gi", description="Edge JetStream store (PVC size for file storage).")
    storage_class_name: str | None = Field(None, description="StorageClass of the edge PVC.")
    max_age: Duration = Field("168h", description="Drop buffered events older than this.")
    max_bytes: Limit = Field("1Gi", description="Maximum bytes buffered; -1 up to the store size.")

    @model_validator(mode="after")
    def _fits(self) -> BufferSettings:
        limit = units.parse_limit(self.max_bytes)
        if limit > units.parse_size(self.store_size):
            raise ValueError(
                f"maxBytes {self.max_bytes} is larger than storeSize {self.store_size}; "
                "raise storeSize or lower maxBytes"
            )
        return self


class EdgeSettings(Model):
    hub_stack: str = Field(description="Fully qualified hub stack, e.g. organization/ops-nats/hub.")
    server_name: DnsName | None = Field(
        None, description="Unique edge name (default: the stack name); prefixes server names."
    )
    replicas: int = Field(1, ge=1, description="NATS servers on this edge.")
    public_host: str | None = Field(
        None,
        description="Address operators dial for the edge's client NodePort; required when "
        "buffering (the edge stream is declared through it).",
    )
    client_node_port: int = Field(
        32223, description="Edge client NodePort (when publicHost is set)."
    )
    buffer: BufferSettings = Field(BufferSettings(), description="Store-and-forward buffer.")

    @field_validator("hub_stack")
    @classmethod
    def _qualified(cls, stack: str) -> str:
        parts = stack.split("/")
        if len(parts) != 3 or not all(p and p == p.strip() for p in parts):
            raise ValueError(
                f"{stack!r} is not a fully qualified stack; write <organization>/<project>/"
                "<stack> (organization/ops-nats/hub with a local backend)"
            )
        return stack

    @field_validator("client_node_port")
    @classmethod
    def _port(cls, port: int) -> int:
        return NodePorts._in_range(port)

    @model_validator(mode="after")
    def _buffer_quorum(self) -> EdgeSettings:
        if self.buffer.enabled and self.replicas == 2:
            raise ValueError(
                "edge.replicas 2 cannot keep the buffer's JetStream quorum when one server "
                "is lost; use 1 or 3"
            )
        return self

    @model_validator(mode="after")
    def _buffer_needs_host(self) -> EdgeSettings:
        if self.buffer.enabled and not self.public_host:
            raise ValueError(
                "buffer.enabled needs publicHost: the edge stream is declared through the "
                "edge's client NodePort; set edge.publicHost to a node address"
            )
        return self


class StackSettings(Model):
    role: Literal["hub", "edge"] = Field(description="`hub` or `edge`.")
    namespace: DnsName = Field("ops-system", description="Kubernetes namespace.")
    release_name: DnsName = Field("nats", description="Helm release name.")
    credentials_rotation: str = Field(
        "1",
        description="Change to rotate every password of this stack; pods roll to pick them up.",
    )
    chart: ChartSettings = Field(ChartSettings(), description="Where the chart comes from.")
    images: ImagesSettings = Field(ImagesSettings(), description="Image repositories and tags.")
    hub: HubSettings | None = Field(None, description="Hub settings (role hub).")
    stream: StreamSettings = Field(StreamSettings(), description="The hub stream (role hub).")
    edge: EdgeSettings | None = Field(None, description="Edge settings (role edge).")

    @model_validator(mode="after")
    def _role_rules(self) -> StackSettings:
        if self.role == "hub":
            self._check_hub()
        elif self.edge is None:
            raise ValueError(
                "role is edge but ops-nats:edge is missing; set edge.hubStack "
                "(e.g. organization/ops-nats/hub)"
            )
        return self

    def _check_hub(self) -> None:
        hub = self.hub
        if hub is None:
            raise ValueError(
                "role is hub but ops-nats:hub is missing; set hub.publicHost to the address "
                "edges dial"
            )
        if self.stream.storage == "file" and not hub.jetstream.file_store.enabled:
            raise ValueError(
                "stream.storage is file but hub.jetstream.fileStore.enabled is false; "
                "enable the file store or set stream.storage: memory"
            )
        if self.stream.storage == "memory" and hub.jetstream.memory_store is None:
            raise ValueError(
                "stream.storage is memory but hub.jetstream.memoryStore is null; "
                "set memoryStore (e.g. 1Gi) or stream.storage: file"
            )
        if self.stream.replicas > hub.replicas:
            raise ValueError(
                f"stream.replicas {self.stream.replicas} is more than hub.replicas "
                f"{hub.replicas}; lower stream.replicas or add hub servers"
            )
        if self.cluster_name in {e.name for e in hub.edges}:
            raise ValueError(
                f"hub.edges lists {self.cluster_name!r}, the hub's own cluster name (from "
                "its releaseName); a leaf with the hub's cluster name is refused: rename the edge"
            )
        if hub.replicas == 2:
            raise ValueError(
                "hub.replicas 2 cannot keep a JetStream quorum when one server is lost; "
                "use 1 (no cluster) or 3 or more"
            )

    @property
    def cluster_name(self) -> str:
        return chart_fullname(self.release_name)

    @property
    def edge_name(self) -> str:
        assert self.edge is not None and self.edge.server_name is not None
        return self.edge.server_name


def chart_fullname(release_name: str) -> str:
    """The chart's ``nats.fullname``: its StatefulSet's, and so the NATS cluster's, name."""
    return release_name if "nats" in release_name else f"{release_name}-nats"


class ConfigError(ValueError):
    """A stack configuration that cannot be deployed; the message is for the operator."""


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in {"function-after", "function-before"} or "[" in str(part):
            continue
        else:
            path += f".{to_camel(str(part)) if '_' in str(part) else part}"
    return path.lstrip(".")


def format_validation_error(
    error: ValidationError, stack: str, secret_keys: frozenset[str] = frozenset()
) -> str:
    """One readable line per problem: ``ops-nats:hub.nodePorts.client = 80: <reason>``."""
    lines = [f"stack {stack!r} has invalid configuration:"]
    for problem in error.errors():
        key = _key_path(problem["loc"])
        shown = f"{PROJECT}:{key}" if key else PROJECT
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (a typo?); remove it or see the README's config reference"
        elif problem["type"] == "missing":
            message = "required key is missing; set it in the stack file"
        value = problem.get("input")
        if key and problem["type"] != "missing" and not isinstance(value, dict | list):
            secret = f"{PROJECT}:{key.split('.')[0]}" in secret_keys
            shown += " = [secret]" if secret else f" = {value!r}"
        lines.append(f"  {shown}: {message}")
    return "\n".join(lines)


def load_settings(
    config: Mapping[str, Any], stack: str, *, secret_keys: set[str] | frozenset[str] = frozenset()
) -> StackSettings:
    """Validate a stack's ``ops-nats:*`` config (namespace prefix optional) for ``stack``.

    Values may be the JSON strings Pulumi hands a program for structured keys. Values of
    ``secret_keys`` are never echoed in error messages.
    """
    raw: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = key.rpartition(":")
        if namespace and namespace != PROJECT:
            continue
        raw[name] = _decode(value)
    edge = raw.get("edge")
    if raw.get("role") == "edge" and isinstance(edge, dict):
        raw["edge"] = {"serverName": stack, **edge}
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, stack, frozenset(secret_keys))) from None


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
