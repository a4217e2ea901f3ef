"""Generated passwords and the Kubernetes Secret that hands them to NATS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi import Input, Output, ResourceOptions

from components.credentials import Credential, secret_name

PASSWORD_LENGTH = 32


@dataclass
class NatsCredentialsArgs:
    namespace: Input[str]
    release_name: str
    credentials: Sequence[Credential]
    # Bumping it regenerates every password (a RandomPassword keeper) and rolls the pods.
    rotation: str
    # More Secret entries built from other secrets, e.g. leafnode remote URLs.
    extra_secret_data: Mapping[str, Input[str]] = field(default_factory=dict)


class NatsCredentials(pulumi.ComponentResource):
    """One RandomPassword per user and the Secret the NATS container reads them from."""

    passwords: dict[str, Output[str]]
    secret: k8s.core.v1.Secret

    def __init__(
        self, name: str, args: NatsCredentialsArgs, opts: ResourceOptions | None = None
    ) -> None:
        super().__init__("ops-nats:index:NatsCredentials", name, None, opts)
        self.passwords = {}
        data: dict[str, Input[str]] = {}
        for credential in args.credentials:
            password = random.RandomPassword(
                f"{name}-{credential.user}",
                # Letters only: NATS expands `$VAR` as an unquoted config token, so a value
                # like "5G14..." parses as a size and the server refuses its config
                # (about 1 in 170 alphanumeric passwords). 52^32 is still ample.
                length=PASSWORD_LENGTH,
                special=False,
                numeric=False,
                keepers={"rotation": args.rotation},
                opts=ResourceOptions(parent=self),
            )
            self.passwords[credential.key] = Output.secret(password.result)
            data[credential.env] = self.passwords[credential.key]
        data.update({key: Output.secret(value) for key, value in args.extra_secret_data.items()})
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=secret_name(args.release_name),
                namespace=args.namespace,
                labels={"app.kubernetes.io/managed-by": "ops-nats"},
            ),
            type="Opaque",
            string_data=data,
            opts=ResourceOptions(parent=self),
        )
        self.register_outputs({"secretName": self.secret.metadata.name})


def credential_outputs(
    credentials: Sequence[Credential], passwords: Mapping[str, Output[str]]
) -> dict[str, Output[object]]:
    """``<key>User``/``<key>Password`` per user: each password its own top-level secret
    output, since one secret inside an exported object makes all of it secret."""
    outputs: dict[str, Output[object]] = {}
    for credential in credentials:
        outputs[credential.user_output] = Output.from_input(credential.user)
        outputs[credential.password_output] = passwords[credential.key]
    return outputs
