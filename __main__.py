"""ops-nats: `pulumi up` on the hub stack, then on each edge stack (see README.md)."""

from __future__ import annotations

import pulumi

from components.edge import NatsEdge, NatsEdgeArgs
from components.hub import NatsHub, NatsHubArgs
from components.settings import ConfigError, load_settings
from components.stack_config import project_config


def main() -> None:
    config, secret_keys = project_config()
    try:
        settings = load_settings(config, pulumi.get_stack(), secret_keys=secret_keys)
    except ConfigError as error:
        # RunError prints the message alone: the operator needs the key and fix, not a trace.
        raise pulumi.RunError(str(error)) from None
    component: NatsHub | NatsEdge
    if settings.role == "hub":
        component = NatsHub("ops-nats", NatsHubArgs(settings=settings))
    else:
        component = NatsEdge("ops-nats", NatsEdgeArgs(settings=settings))
    for key, value in component.stack_outputs().items():
        pulumi.export(key, value)


main()
