"""Pieces both stacks declare the same way: the namespace, the chart, the NodePort Service."""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s
from pulumi import Input, Resource, ResourceOptions

from components.chart_values import nodeport_service_spec
from components.settings import StackSettings


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
