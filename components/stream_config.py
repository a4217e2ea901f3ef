"""Settings -> JetStream API stream configurations (pure data, JSON as the server speaks it).

Durations are nanoseconds and sizes bytes, exactly what ``$JS.API.STREAM.INFO`` returns,
so a desired config and a live one can be compared key by key.
"""

from __future__ import annotations

from typing import Any

from components import units
from components.settings import BufferSettings, StreamSettings

# Keys whose change the server refuses on update: the stream must be replaced.
IMMUTABLE_KEYS = frozenset({"name", "storage", "retention"})


def hub_stream_config(stream: StreamSettings, buffered_edges: list[str]) -> dict[str, Any]:
    """The hub stream; every buffered edge's stream of the same name is a source."""
    config: dict[str, Any] = {
        "name": stream.name,
        "subjects": list(stream.subjects),
        "retention": stream.retention,
        "max_consumers": -1,
        "max_msgs": stream.max_msgs,
        "max_bytes": units.parse_limit(stream.max_bytes),
        "max_age": units.parse_duration_ns(stream.max_age),
        "max_msg_size": units.parse_limit(stream.max_msg_size),
        "storage": stream.storage,
        "discard": stream.discard,
        "num_replicas": stream.replicas,
        "duplicate_window": units.parse_duration_ns(stream.duplicate_window),
        "no_ack": stream.no_ack,
    }
    if buffered_edges:
        config["sources"] = [edge_source(stream.name, edge) for edge in sorted(buffered_edges)]
    return config


def edge_source(stream_name: str, edge: str) -> dict[str, Any]:
    """A source that reads ``stream_name`` in the JetStream domain ``edge`` over the leafnode."""
    return {"name": stream_name, "external": {"api": f"$JS.{edge}.API", "deliver": ""}}


def edge_buffer_stream_config(
    name: str, subjects: list[str], buffer: BufferSettings
) -> dict[str, Any]:
    """The edge's local store-and-forward stream: it acks publishes while the hub is away."""
    return {
        "name": name,
        "subjects": list(subjects),
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": units.parse_limit(buffer.max_bytes),
        "max_age": units.parse_duration_ns(buffer.max_age),
        "max_msg_size": -1,
        "storage": buffer.storage,
        "discard": "old",
        "num_replicas": 1,
        "duplicate_window": units.parse_duration_ns("2m"),
        "no_ack": False,
    }


def changed_keys(desired: dict[str, Any], live: dict[str, Any]) -> list[str]:
    """Keys of ``desired`` whose live value differs (server-side defaults are ignored)."""
    return sorted(k for k, v in desired.items() if _normal(live.get(k)) != _normal(v))


def _normal(value: Any) -> Any:
    # The server omits false flags and empty strings (e.g. a source's empty deliver prefix).
    if value is None or value is False or value == "":
        return None
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if _normal(v) is not None}
    return value
