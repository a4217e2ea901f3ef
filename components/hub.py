"""NatsHub: the 3-node JetStream cluster every edge joins, and the stream events land in."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi import Output, ResourceOptions

from components import chart_release
from components import credentials as creds
from components.chart_values import CLIENT_PORT, LEAFNODE_PORT, hub_values
from components.nats_credentials import credential_outputs
from components.settings import StackSettings
from components.stream_config import hub_stream_config
from components.stream_resource import JetStreamStream, JetStreamStreamArgs


@dataclass
class NatsHubArgs:
    settings: StackSettings


class NatsHub(pulumi.ComponentResource):
    client_url: Output[str]
    leafnode_url: Output[str]
    jetstream_domain: Output[str]
    edges: Output[list[str]]
    buffered_edges: Output[list[str]]
    stream_name: Output[str]
    stream_subjects: Output[list[str]]
    credentials_rotation: Output[str]
    passwords: dict[str, Output[str]]

    def __init__(self, name: str, args: NatsHubArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("ops-nats:index:NatsHub", name, None, opts)
        settings = args.settings
        hub = settings.hub
        assert hub is not None, "NatsHub needs role hub (checked by the settings)"

        nats = chart_release.release(
            name, settings, hub_values(settings), creds.HUB_CREDENTIALS, self
        )
        service = chart_release.nodeport_service(
            name,
            settings,
            {
                "nats": (CLIENT_PORT, hub.node_ports.client),
                "leafnodes": (LEAFNODE_PORT, hub.node_ports.leafnodes),
            },
            nats.namespace,
            self,
        )
        client_url = f"nats://{hub.public_host}:{hub.node_ports.client}"
        JetStreamStream(
            f"{name}-stream",
            JetStreamStreamArgs(
                servers=[client_url],
                user=creds.APP.user,
                password=nats.passwords[creds.APP.key],
                config=hub_stream_config(settings.stream, hub.buffered_edges),
            ),
            # The stream is reached through the NodePort once the servers are up.
            opts=ResourceOptions(parent=self, depends_on=[nats.chart, service]),
        )

        self.client_url = Output.from_input(client_url)
        self.leafnode_url = Output.from_input(
            f"nats://{hub.public_host}:{hub.node_ports.leafnodes}"
        )
        self.jetstream_domain = Output.from_input(hub.jetstream_domain)
        self.edges = Output.from_input([e.name for e in hub.edges])
        self.buffered_edges = Output.from_input(hub.buffered_edges)
        self.stream_name = Output.from_input(settings.stream.name)
        self.stream_subjects = Output.from_input(list(settings.stream.subjects))
        self.credentials_rotation = Output.from_input(settings.credentials_rotation)
        self.passwords = nats.passwords
        self.register_outputs(self.stack_outputs())

    def stack_outputs(self) -> dict[str, Output[object]]:
        """What edges and operators read; each password its own top-level secret output."""
        outputs: dict[str, Output[object]] = {
            "clientUrl": self.client_url,
            "leafnodeUrl": self.leafnode_url,
            "jetstreamDomain": self.jetstream_domain,
            "edges": self.edges,
            "bufferedEdges": self.buffered_edges,
            "streamName": self.stream_name,
            "streamSubjects": self.stream_subjects,
            "credentialsRotation": self.credentials_rotation,
        }
        return outputs | credential_outputs(creds.HUB_CREDENTIALS, self.passwords)
