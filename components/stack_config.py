"""Reading a stack's whole ``ops-nats:*`` configuration from the Pulumi runtime."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import config as runtime_config

from components.settings import PROJECT


def project_config() -> tuple[dict[str, Any], set[str]]:
    """Every ``ops-nats:*`` key of the stack, and which of them are secret.

    pulumi.Config only answers for keys it is asked about; to reject a misspelt top-level
    key we need them all, which only the runtime's config map holds.
    """
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    values = {key: value for key, value in merged.items() if key.startswith(prefix)}
    secret = set(runtime_config.get_config_secret_keys_env()) | set(
        runtime_config._SECRET_KEYS.get()
    )
    return values, {key for key in secret if key.startswith(prefix)}
