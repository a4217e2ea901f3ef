"""The JetStream stream as a Pulumi resource: a dynamic provider over components.jetstream.

The provider is pickled into the Pulumi engine's Python and run there, so it holds no
state of its own and reaches everything it needs through module-level imports (the
engine imports this module by name, with the project directory on its path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN

from components import jetstream
from components.stream_config import IMMUTABLE_KEYS, changed_keys

DEFAULT_CONNECT_TIMEOUT = 300.0

# How the provider reaches the stream, as opposed to what the stream is: a change here is
# stored (an update) but never replaces the stream.
CONNECTION_KEYS = ("servers", "user", "password", "domain", "connect_timeout")

# Outputs the engine must encrypt in state even when the program passed a plain string.
SECRET_OUTPUTS = ["password"]

# Config keys the server may hold although the desired config leaves them out: a source
# added behind our back must show as drift, or refresh would hide it.
_OPTIONAL_KEYS = ("sources",)


def _unknown(value: Any) -> bool:
    # Preview hands diff the not-yet-known values (e.g. a rotated password) in both forms.
    return isinstance(value, Unknown) or value == UNKNOWN


def _target(props: Mapping[str, Any]) -> jetstream.Target:
    return jetstream.Target(
        servers=tuple(props["servers"]),
        user=props["user"],
        password=props["password"],
        domain=props.get("domain") or None,
        timeout=float(props.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
    )


def _config_changes(old: Any, new: Any) -> list[str]:
    """Keys that differ either way, so a key dropped from the config (e.g. sources) counts."""
    if _unknown(old) or _unknown(new) or not isinstance(old, dict) or not isinstance(new, dict):
        return ["*"] if old != new or _unknown(new) else []
    return sorted(set(changed_keys(new, old)) | set(changed_keys(old, new)))


def _observed(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The live config seen through the desired one: the desired spelling where they agree.

    The server fills in and omits fields (a source's empty deliver prefix, false flags);
    keeping our own spelling for equal values keeps refreshes free of noise, and taking
    the server's value where they differ makes real drift show up as a diff.
    """
    drifted = set(changed_keys(dict(desired), dict(live)))
    observed = {k: (live.get(k) if k in drifted else v) for k, v in desired.items()}
    for key in _OPTIONAL_KEYS:
        if key not in desired and live.get(key):
            observed[key] = live[key]
    return observed


def _live_summary(info: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    # Only what stays put between refreshes: message counts and leaders would be noise.
    config = info.get("config") or {}
    return {
        "created": info.get("created"),
        "config": {k: config[k] for k in desired if k in config},
    }


def _outs(
    props: Mapping[str, Any], config: Mapping[str, Any], info: Mapping[str, Any]
) -> dict[str, Any]:
    outs: dict[str, Any] = {key: props.get(key) for key in CONNECTION_KEYS}
    outs["config"] = dict(config)
    outs["live"] = _live_summary(info, config)
    return outs


def _failed(action: str, name: str, error: jetstream.JetStreamError) -> jetstream.JetStreamError:
    return jetstream.JetStreamError(f"could not {action} JetStream stream {name!r}: {error}")


class JetStreamStreamProvider(ResourceProvider):
    """CRUD for one stream; id is the stream name (unique per account and domain)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        servers = news.get("servers")
        if not _unknown(servers) and not servers:
            failures.append(CheckFailure("servers", "list at least one nats:// URL"))
        config = news.get("config")
        if not _unknown(config) and not (isinstance(config, dict) and config.get("name")):
            failures.append(
                CheckFailure("config", "a JetStream stream config with a name is required")
            )
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        config = props["config"]
        name = config["name"]
        try:
            # Converges a stream that already exists under this name (a memory-only hub
            # that restarted, a stream made by hand from the runbook) instead of failing.
            info = jetstream.run(jetstream.create_stream(_target(props), config))
        except jetstream.JetStreamError as error:
            raise _failed("create", name, error) from None
        return CreateResult(name, _outs(props, config, info))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        config_changes = _config_changes(olds.get("config"), news.get("config"))
        replaces = (
            ["config"] if "*" not in config_changes and IMMUTABLE_KEYS & set(config_changes) else []
        )
        connection_changed = any(
            _unknown(news.get(key)) or olds.get(key) != news.get(key) for key in CONNECTION_KEYS
        )
        return DiffResult(
            changes=bool(config_changes) or connection_changed,
            replaces=replaces,
            # The replacement has the same name: the old stream must be gone first.
            delete_before_replace=True,
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        config = news["config"]
        try:
            info = jetstream.run(jetstream.update_stream(_target(news), config))
        except jetstream.JetStreamError as error:
            raise _failed("update", config["name"], error) from None
        return UpdateResult(_outs(news, config, info))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        try:
            jetstream.run(jetstream.delete_stream(_target(props), id_))
        except jetstream.JetStreamError as error:
            raise jetstream.JetStreamError(
                f"could not delete JetStream stream {id_!r}: {error}. If those servers are gone "
                "for good, forget the stream with `pulumi state delete <urn>` (find the urn with "
                "`pulumi stack --show-urns`); otherwise start them and run the command again"
            ) from None

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if "servers" not in props or "config" not in props:
            raise jetstream.JetStreamError(
                f"stream {id_!r} cannot be imported: declare it in the program and run "
                "`pulumi up`, which adopts an existing stream of the same name"
            )
        try:
            info = jetstream.run(jetstream.stream_info(_target(props), id_))
        except jetstream.JetStreamError as error:
            raise _failed("read", id_, error) from None
        if info is None:
            # Gone (a memory-only hub restarted): an empty id makes Pulumi forget it, so
            # `pulumi up --refresh` creates it again. The engine needs a dict, not None.
            return ReadResult(None, {})
        observed = _observed(props["config"], info.get("config") or {})
        return ReadResult(id_, _outs(props, observed, info))


@dataclass
class JetStreamStreamArgs:
    """Where the stream lives, how to log in, and the stream's JetStream API config."""

    servers: pulumi.Input[Sequence[pulumi.Input[str]]]
    user: pulumi.Input[str]
    password: pulumi.Input[str]
    config: pulumi.Input[Mapping[str, Any]]
    domain: pulumi.Input[str] | None = None  # an edge's JetStream domain; None for the hub
    connect_timeout: pulumi.Input[float] = DEFAULT_CONNECT_TIMEOUT


class JetStreamStream(Resource, module="ops-nats", name="JetStreamStream"):
    """A JetStream stream declared, diffed and updated by ``pulumi up``."""

    servers: pulumi.Output[list[str]]
    user: pulumi.Output[str]
    password: pulumi.Output[str]
    domain: pulumi.Output[str | None]
    config: pulumi.Output[dict[str, Any]]
    connect_timeout: pulumi.Output[float]
    live: pulumi.Output[dict[str, Any]]

    def __init__(
        self,
        name: str,
        args: JetStreamStreamArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "servers": args.servers,
            "user": args.user,
            "password": pulumi.Output.secret(args.password),
            "domain": args.domain,
            "config": args.config,
            "connect_timeout": args.connect_timeout,
            "live": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS)
        )
        super().__init__(JetStreamStreamProvider(), name, props, opts)
