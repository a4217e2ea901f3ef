"""The state directory: generated passwords (0600 files), the plan and the pids it started.

Layout (default ``.sandbox/`` in the repository root, gitignored)::

    state.json               plan + pid of every server started (no passwords)
    credentials/<stack>.json passwords of a stack, mode 0600 (directory 0700)
    servers/<server>/        nats.conf, nats.log, nats.pid, jetstream/

Passwords are kept across ``up``/``down`` like a Pulumi stack keeps its RandomPasswords,
so an operator's exported variables stay valid; ``down --purge`` forgets them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.plan import SERVERS_DIR, Plan

STATE_FILE = "state.json"
CREDENTIALS_DIR = "credentials"
PASSWORD_LENGTH = 32
_LETTERS = string.ascii_letters
_ALPHANUMERIC = string.ascii_letters + string.digits


class StateError(RuntimeError):
    """The state directory is missing or unreadable; the message names the fix."""


@dataclass
class State:
    """What ``up`` left behind for the other commands."""

    plan: Plan
    pids: dict[str, int] = field(default_factory=dict)  # server name -> pid

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "plan": self.plan.to_json(), "pids": self.pids}


def default_state_dir() -> Path:
    return Path(__file__).resolve().parent.parent / ".sandbox"


def generate_password() -> str:
    """A letter then letters and digits.

    nats-server parses an env var's value as a config value: ``12k`` would become the
    number 12000 and ``-x`` a parse error, so a password must read as a plain string.
    """
    return secrets.choice(_LETTERS) + "".join(
        secrets.choice(_ALPHANUMERIC) for _ in range(PASSWORD_LENGTH - 1)
    )


def credentials_path(state_dir: Path, stack: str) -> Path:
    return state_dir / CREDENTIALS_DIR / f"{stack}.json"


def load_or_create_passwords(state_dir: Path, stack: str, envs: tuple[str, ...]) -> dict[str, str]:
    """The stack's passwords by env var name; missing ones are generated and saved 0600."""
    path = credentials_path(state_dir, stack)
    passwords = read_passwords(state_dir, stack) if path.exists() else {}
    missing = [env for env in envs if env not in passwords]
    if missing:
        passwords.update({env: generate_password() for env in missing})
        write_private(path, json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    return {env: passwords[env] for env in envs}


def read_passwords(state_dir: Path, stack: str) -> dict[str, str]:
    path = credentials_path(state_dir, stack)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(
            f"no credentials for stack {stack!r} in {path.parent}; run `python -m sandbox up`"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise StateError(
            f"cannot read {path}: {error}; run `python -m sandbox down --purge` and `up` again"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise StateError(f"{path} is not a JSON object of passwords; remove it and run `up`")
    return data


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only (created 0600, never wider for a moment)."""
    make_private_dir(path.parent)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)  # in case the file already existed with wider permissions
    os.replace(tmp, path)


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def save_state(state_dir: Path, state: State) -> None:
    make_private_dir(state_dir)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_state(state_dir: Path) -> State | None:
    """The saved state, or None when nothing was started from this state directory."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return State(plan=Plan.from_json(data["plan"]), pids=dict(data["pids"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StateError(
            f"cannot read {path} ({error}); stop any nats-server it started by hand, then "
            f"remove {state_dir} or run `python -m sandbox down --purge`"
        ) from None


def clear_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)


def reset_servers_dir(state_dir: Path) -> None:
    """Fresh server directories (configs, logs, JetStream data) for a new ``up``."""
    shutil.rmtree(state_dir / SERVERS_DIR, ignore_errors=True)


def purge(state_dir: Path) -> None:
    """Forget everything, passwords included (only after every process has stopped)."""
    for name in (STATE_FILE, CREDENTIALS_DIR, SERVERS_DIR):
        target = state_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
