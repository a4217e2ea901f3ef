"""Who logs in where: users, the Secret keys holding their passwords, and env var names.

NATS never sees a password in its config: the config says ``$ADMIN_PASSWORD`` and the
container gets that variable from the Kubernetes Secret (or, in local mode, from the
process environment). Everything here is static so chart values stay known at preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

SYSTEM_ACCOUNT = "SYS"
APP_ACCOUNT = "APP"


@dataclass(frozen=True)
class Credential:
    """One NATS user whose password is generated and kept as a secret."""

    key: str  # stack output / Secret data key prefix, e.g. "admin" -> adminUser, adminPassword
    user: str
    account: str
    env: str  # env var the server config references
    leaf_only: bool = False  # accepted on the leafnode port only

    @property
    def password_ref(self) -> str:
        """The chart's unquoted-string syntax for the env var holding the password."""
        return f"<< ${self.env} >>"

    @property
    def user_output(self) -> str:
        return f"{self.key}User"

    @property
    def password_output(self) -> str:
        return f"{self.key}Password"


ADMIN = Credential("admin", "admin", SYSTEM_ACCOUNT, "ADMIN_PASSWORD")
APP = Credential("app", "app", APP_ACCOUNT, "APP_PASSWORD")
LEAF_SYS = Credential("leafSys", "leaf-sys", SYSTEM_ACCOUNT, "LEAF_SYS_PASSWORD", leaf_only=True)
LEAF_APP = Credential("leafApp", "leaf-app", APP_ACCOUNT, "LEAF_APP_PASSWORD", leaf_only=True)

HUB_CREDENTIALS = (ADMIN, APP, LEAF_SYS, LEAF_APP)
EDGE_CREDENTIALS = (ADMIN, APP)


@dataclass(frozen=True)
class RemoteUrl:
    """A leafnode remote whose URL (it carries the password) lives in an env var."""

    account: str
    env: str
    credential: Credential  # the hub's leaf-only user this remote logs in as

    @property
    def url_ref(self) -> str:
        return f"<< ${self.env} >>"


EDGE_REMOTES = (
    RemoteUrl(SYSTEM_ACCOUNT, "HUB_SYS_URL", LEAF_SYS),
    RemoteUrl(APP_ACCOUNT, "HUB_APP_URL", LEAF_APP),
)


def secret_name(release_name: str) -> str:
    return f"{release_name}-credentials"


def remote_url(leafnode_url: str, user: str, password: str) -> str:
    """``nats://user:password@host:port``: NATS 2.10 remotes take credentials only in the URL."""
    parts = urlsplit(leafnode_url)
    if not parts.scheme or not parts.hostname or parts.port is None:
        raise ValueError(
            f"hub leafnode URL {leafnode_url!r} is not like nats://host:port; "
            "check the hub stack's leafnodeUrl output"
        )
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"{parts.scheme}://{userinfo}@{parts.hostname}:{parts.port}"


def secret_env(secret: str, names: list[str]) -> dict[str, dict[str, object]]:
    """``container.env`` entries that load each variable from the Secret key of that name."""
    return {name: secret_key_ref(secret, name) for name in names}


def secret_key_ref(secret: str, key: str) -> dict[str, object]:
    return {"valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
