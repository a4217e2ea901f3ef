"""NatsEdge: a NATS server on an edge cluster that joins the hub as a leafnode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi import Output, ResourceOptions

from components import chart_release
from components import credentials as creds
from components.chart_values import CLIENT_PORT, HubFacts, edge_values
from components.nats_credentials import credential_outputs
from components.settings import StackSettings
from components.stream_config import edge_buffer_stream_config
from components.stream_resource import JetStreamStream, JetStreamStreamArgs


@dataclass
class NatsEdgeArgs:
    settings: StackSettings


class EdgeNotAdmittedError(ValueError):
    """The hub stack does not list this edge the way the edge stack configures it."""


def check_admission(
    edge: str, buffered: bool, hub_edges: list[str], hub_buffered: list[str]
) -> None:
    """Refuse to deploy an edge the hub would not source (or would source needlessly)."""
    if edge not in hub_edges:
        raise EdgeNotAdmittedError(
            f"edge {edge!r} is not in the hub's edges {hub_edges}; add it to ops-nats:hub.edges "
            "in the hub stack and run `pulumi up` on the hub first"
        )
    if buffered != (edge in hub_buffered):
        want = "with buffered: true" if buffered else "without buffered: true"
        raise EdgeNotAdmittedError(
            f"edge {edge!r} has edge.buffer.enabled {str(buffered).lower()} but the hub lists "
            f"it {'without' if buffered else 'with'} buffered: true; list it {want} in "
            "ops-nats:hub.edges and run `pulumi up` on the hub first (else its events "
            "would never reach the hub stream, or arrive twice)"
        )


class NatsEdge(pulumi.ComponentResource):
    server_name: Output[str]
    hub_leafnode_url: Output[str]
    client_url: Output[str | None]
    passwords: dict[str, Output[str]]

    def __init__(self, name: str, args: NatsEdgeArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("ops-nats:index:NatsEdge", name, None, opts)
        settings = args.settings
        edge = settings.edge
        assert edge is not None, "NatsEdge needs role edge (checked by the settings)"
        edge_name = settings.edge_name

        hub = pulumi.StackReference(
            f"{name}-hub", stack_name=edge.hub_stack, opts=ResourceOptions(parent=self)
        )
        leafnode_url = hub.require_output("leafnodeUrl")
        stream_name = hub.require_output("streamName")
        stream_subjects = hub.require_output("streamSubjects")

        def admitted_values(facts: list[Any]) -> dict[str, Any]:
            name_, subjects, rotation, hub_edges, hub_buffered = facts
            check_admission(edge_name, edge.buffer.enabled, hub_edges, hub_buffered)
            return edge_values(settings, HubFacts(name_, tuple(subjects), rotation))

        values = Output.all(
            stream_name,
            stream_subjects,
            hub.require_output("credentialsRotation"),
            hub.require_output("edges"),
            hub.require_output("bufferedEdges"),
        ).apply(admitted_values)

        remote_urls = {
            remote.env: Output.secret(
                Output.all(
                    leafnode_url,
                    hub.require_output(remote.credential.user_output),
                    hub.require_output(remote.credential.password_output),
                ).apply(lambda parts: creds.remote_url(*parts))
            )
            for remote in creds.EDGE_REMOTES
        }
        nats = chart_release.release(
            name, settings, values, creds.EDGE_CREDENTIALS, self, extra_secret_data=remote_urls
        )

        client_url: str | None = None
        if edge.public_host:
            client_url = f"nats://{edge.public_host}:{edge.client_node_port}"
            service = chart_release.nodeport_service(
                name,
                settings,
                {"nats": (CLIENT_PORT, edge.client_node_port)},
                nats.namespace,
                self,
            )
            if edge.buffer.enabled:
                JetStreamStream(
                    f"{name}-buffer-stream",
                    JetStreamStreamArgs(
                        servers=[client_url],
                        user=creds.APP.user,
                        password=nats.passwords[creds.APP.key],
                        config=Output.all(stream_name, stream_subjects).apply(
                            lambda hub_stream: edge_buffer_stream_config(
                                hub_stream[0], list(hub_stream[1]), edge.buffer
                            )
                        ),
                    ),
                    opts=ResourceOptions(parent=self, depends_on=[nats.chart, service]),
                )

        self.server_name = Output.from_input(edge_name)
        self.hub_leafnode_url = leafnode_url
        self.client_url = Output.from_input(client_url)
        self.passwords = nats.passwords
        self.register_outputs(self.stack_outputs())

    def stack_outputs(self) -> dict[str, Output[object]]:
        outputs: dict[str, Output[object]] = {
            "serverName": self.server_name,
            "hubLeafnodeUrl": self.hub_leafnode_url,
            "clientUrl": self.client_url,
        }
        return outputs | credential_outputs(creds.EDGE_CREDENTIALS, self.passwords)
