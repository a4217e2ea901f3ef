"""Stack-file units and the stream configs built from them (pure data, no server)."""

from __future__ import annotations

import pytest

from components import units
from components.settings import BufferSettings, StreamSettings
from components.stream_config import (
    changed_keys,
    edge_buffer_stream_config,
    hub_stream_config,
)

GI = 1024**3
MI = 1024**2
SECOND_NS = 1_000_000_000

# `nats stream add ops --subjects "ops.>" --ack --max-msgs=-1 --max-bytes=-1 --max-age=168h
#  --storage file --retention limits --max-msg-size=-1 --discard=old --replicas 1
#  --dupe-window=2m`, as the JetStream API receives it.
SEED_STREAM = {
    "name": "ops",
    "subjects": ["ops.>"],
    "retention": "limits",
    "max_consumers": -1,
    "max_msgs": -1,
    "max_bytes": -1,
    "max_age": 168 * 3600 * SECOND_NS,
    "max_msg_size": -1,
    "storage": "file",
    "discard": "old",
    "num_replicas": 1,
    "duplicate_window": 120 * SECOND_NS,
    "no_ack": False,
}


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", GI), ("512Mi", 512 * MI), ("10GB", 10 * GI), ("100", 100), (0, 0)],
)
def test_sizes_read_as_kubernetes_and_nats_write_them(text, size):
    assert units.parse_size(text) == size


@pytest.mark.parametrize("unlimited", [-1, "-1"])
def test_minus_one_means_unlimited_for_limits(unlimited):
    assert units.parse_limit(unlimited) == -1


@pytest.mark.parametrize("bad", ["lots", "1Xi", "", "10 G B"])
def test_bad_size_says_what_a_size_looks_like(bad):
    with pytest.raises(ValueError, match="expected a size like 1Gi"):
        units.parse_size(bad)


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        units.parse_size(-5)


def test_minus_one_is_not_a_pvc_size():
    with pytest.raises(ValueError, match="cannot be negative"):
        units.parse_size(-1)


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("168h", 168 * 3600), ("2m", 120), ("1h30m", 5400), ("7d", 7 * 86400), ("0", 0), (0, 0)],
)
def test_durations_read_as_go_writes_them(text, seconds):
    assert units.parse_duration_ns(text) == seconds * SECOND_NS


@pytest.mark.parametrize("bad", ["7 days", "1h 30m", "-1h", "h", "forever"])
def test_bad_duration_says_what_a_duration_looks_like(bad):
    with pytest.raises(ValueError, match="expected a duration like 168h"):
        units.parse_duration_ns(bad)


def test_duration_without_a_unit_asks_for_one():
    with pytest.raises(ValueError, match=r"needs a unit \(e\.g\. 5s\)"):
        units.parse_duration_ns(5)


# --- subjects -----------------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["ops.>", "ops.*.status", "ops.test"])
def test_valid_subjects_pass(subject):
    assert units.check_subject(subject) == subject


def test_full_wildcard_must_be_last():
    with pytest.raises(ValueError, match="'>' may only be the last token"):
        units.check_subject("ops.>.x")


@pytest.mark.parametrize("subject", ["ops..x", ".ops", "ops.", "ops.a b"])
def test_empty_or_spaced_tokens_are_rejected(subject):
    with pytest.raises(ValueError, match="is empty or holds a space"):
        units.check_subject(subject)


def test_stream_settings_reject_a_bad_subject():
    with pytest.raises(ValueError, match="may only be the last token"):
        StreamSettings(subjects=["ops.>.x"])


# --- stream configs -----------------------------------------------------------------------


def test_default_hub_stream_is_the_runbooks_stream():
    assert hub_stream_config(StreamSettings(), []) == SEED_STREAM


def test_production_hub_stream_has_three_replicas():
    config = hub_stream_config(StreamSettings(replicas=3, max_bytes="5Gi"), [])

    assert config["num_replicas"] == 3
    assert config["max_bytes"] == 5 * GI


def test_hub_stream_sources_each_buffered_edge_through_its_domain_in_name_order():
    config = hub_stream_config(StreamSettings(), ["edge-b", "edge-a"])

    assert config["sources"] == [
        {"name": "ops", "external": {"api": "$JS.edge-a.API", "deliver": ""}},
        {"name": "ops", "external": {"api": "$JS.edge-b.API", "deliver": ""}},
    ]


def test_edge_buffer_stream_stores_the_hub_subjects_locally():
    buffer = BufferSettings(enabled=True, storage="memory", max_age="24h", max_bytes="512Mi")

    config = edge_buffer_stream_config("ops", ["ops.>"], buffer)

    assert config["subjects"] == ["ops.>"]
    assert config["storage"] == "memory"
    assert config["max_age"] == 24 * 3600 * SECOND_NS
    assert config["max_bytes"] == 512 * MI
    assert config["num_replicas"] == 1


# --- comparing with the server ------------------------------------------------------------


def test_server_filled_fields_are_not_drift():
    desired = hub_stream_config(StreamSettings(), ["edge-a"])
    live = {
        **{k: v for k, v in desired.items() if k != "no_ack"},  # the server omits false flags
        "sources": [{"name": "ops", "external": {"api": "$JS.edge-a.API"}}],
        "max_msgs_per_subject": -1,
        "compression": "none",
    }

    assert changed_keys(desired, live) == []


def test_changed_limits_are_drift():
    desired = hub_stream_config(StreamSettings(), [])
    live = {**desired, "max_age": 3600 * SECOND_NS, "num_replicas": 3}

    assert changed_keys(desired, live) == ["max_age", "num_replicas"]
