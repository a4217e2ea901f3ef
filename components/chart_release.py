"""Pieces both stacks declare the same way: the namespace, the chart, the NodePort Service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi_kubernetes as k8s
from pulumi import Input, Output, Resource, ResourceOptions

from components.chart_values import nodeport_service_spec
from components.credentials import Credential
from components.nats_credentials import NatsCredentials, NatsCredentialsArgs
from components.settings import StackSettings


@dataclass
class Release:
    """What a stack's NATS release gives the rest of its component."""

    namespace: Output[str]
    passwords: dict[str, Output[str]]
    chart: k8s.helm.v4.Chart


def release(
    name: str,
    settings: StackSettings,
    values: Input[dict[str, Any]],
    credentials: Sequence[Credential],
    parent: Resource,
    extra_secret_data: Mapping[str, Input[str]] | None = None,
) -> Release:
    """Namespace, generated passwords in their Secret, and the chart that reads them."""
    ns = namespace(name, settings, parent)
    secret = NatsCredentials(
        f"{name}-credentials",
        NatsCredentialsArgs(
            namespace=ns.metadata.name,
            release_name=settings.release_name,
            credentials=credentials,
            rotation=settings.credentials_rotation,
            extra_secret_data=extra_secret_data or {},
        ),
        opts=ResourceOptions(parent=parent),
    )
    nats_chart = chart(
        name,
        settings,
        values,
        ns.metadata.name,
        # Pods read the Secret at start: it must exist before the StatefulSet does.
        ResourceOptions(parent=parent, depends_on=[secret]),
    )
    return Release(ns.metadata.name, secret.passwords, nats_chart)


def namespace(name: str, settings: StackSettings, parent: Resource) -> k8s.core.v1.Namespace:
    # Retained on delete: destroying a stack must not take other tenants' objects with it.
    return k8s.core.v1.Namespace(
        f"{name}-namespace",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=settings.namespace),
        opts=ResourceOptions(parent=parent, retain_on_delete=True),
    )


def chart(
    name: str,
    settings: StackSettings,
    values: Input[dict[str, Any]],
    namespace_name: Input[str],
    opts: ResourceOptions,
) -> k8s.helm.v4.Chart:
    """The `nats` chart, from its repository or from a local path (air-gapped sites).

    helm.v4.Chart rather than helm.v3.Release: every rendered object is a Pulumi resource,
    so `pulumi preview` shows the real diff and Pulumi waits for readiness itself.
    """
    source = settings.chart
    return k8s.helm.v4.Chart(
        f"{name}-chart",
        k8s.helm.v4.ChartArgs(
            chart=source.path or "nats",
            version=None if source.path else source.version,
            repository_opts=None
            if source.path
            else k8s.helm.v4.RepositoryOptsArgs(repo=source.repository),
            name=settings.release_name,
            namespace=namespace_name,
            values=values,
        ),
        opts=opts,
    )


def nodeport_service(
    name: str,
    settings: StackSettings,
    ports: dict[str, tuple[int, int]],
    namespace_name: Input[str],
    parent: Resource,
) -> k8s.core.v1.Service:
    """Our own Service: patching the chart's would be reverted by the next chart upgrade."""
    return k8s.core.v1.Service(
        f"{name}-nodeport",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=f"{settings.release_name}-nodeport",
            namespace=namespace_name,
            labels={"app.kubernetes.io/managed-by": "ops-nats"},
        ),
        spec=nodeport_service_spec(settings.release_name, ports),
        opts=ResourceOptions(parent=parent),
    )
