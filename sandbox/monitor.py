"""Read a server's HTTP monitoring endpoints (``/healthz``, ``/varz``, ``/leafz``, ``/jsz``...).

Every call is a single bounded GET on 127.0.0.1; ``None`` means "not answering (yet)".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from sandbox.server_config import LOOPBACK


def get_json(http_port: int, path: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """The endpoint's JSON, also for error statuses (``/healthz`` answers 503 with a body)."""
    url = f"http://{LOOPBACK}:{http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return json.loads(error.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def healthy(http_port: int, query: str = "") -> bool:
    """``/healthz`` says ok: the server runs and, with JetStream, is current with its cluster."""
    health = get_json(http_port, f"/healthz{query}")
    return bool(health) and health.get("status") == "ok"


def health_error(http_port: int) -> str:
    health = get_json(http_port, "/healthz")
    if health is None:
        return "monitoring port not answering"
    return str(health.get("error") or health.get("status"))


def leaf_accounts(http_port: int) -> list[str]:
    """Accounts of this server's current leafnode connections (each remote is one)."""
    leafz = get_json(http_port, "/leafz")
    if not leafz:
        return []
    return sorted(leaf.get("account", "") for leaf in leafz.get("leafs") or [])


def leafz(http_port: int) -> list[dict[str, Any]]:
    data = get_json(http_port, "/leafz")
    return list(data.get("leafs") or []) if data else []


def route_count(http_port: int) -> int:
    routez = get_json(http_port, "/routez")
    return int(routez.get("num_routes", 0)) if routez else 0


def varz(http_port: int) -> dict[str, Any] | None:
    return get_json(http_port, "/varz")


def jsz(http_port: int) -> dict[str, Any] | None:
    return get_json(http_port, "/jsz")
