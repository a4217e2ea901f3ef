"""Parsing of the human units used in stack files: sizes, durations, subjects, names.

Pure functions; every error message says what was expected so that the settings layer
can pass it on to the operator unchanged.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?|[KMGTP]B|[kmgtp]i?[bB]?|B)?\s*$")
_BINARY = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}

_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBJECT_TOKEN_RE = re.compile(r"^[^\s.*>]+$")


def parse_size(value: str | int) -> int:
    """Bytes in a size like ``1Gi``, ``512Mi``, ``10GB`` or a plain integer.

    Kubernetes (``Gi``) and NATS (``GB``) spellings both mean powers of 1024 here, as they
    do in nats-server, so one string can be used for a PVC and a JetStream limit alike.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 1Gi or 512Mi, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"expected a size like 1Gi, 512Mi or 10GB, got {value!r}")
    number, unit = match.groups()
    prefix = (unit or "").upper()[:1]
    size = float(number) * _BINARY[prefix if prefix in _BINARY else ""]
    return int(size)


def parse_limit(value: str | int) -> int:
    """A byte limit where ``-1`` means unlimited (the JetStream convention)."""
    if value == -1 or value == "-1":
        return -1
    return parse_size(value)


def parse_duration_ns(value: str | int) -> int:
    """Nanoseconds in a Go-style duration (``168h``, ``2m``, ``1h30m``, ``7d``); 0 means none."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 168h or 2m, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        if value != 0:
            raise ValueError(f"a duration needs a unit (e.g. {value}s), got {value}")
        return 0
    text = str(value).strip()
    if text == "0":
        return 0
    parts = _DURATION_PART_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration like 168h, 2m or 1h30m, got {value!r}")
    return int(sum(float(n) * _DURATION_NS[u] for n, u in parts))


def check_subject(subject: str, *, allow_wildcards: bool = True) -> str:
    """Return ``subject`` if it is a valid NATS subject, else raise with the reason."""
    if not subject or subject != subject.strip():
        raise ValueError(f"subject {subject!r} is empty or has surrounding spaces")
    tokens = subject.split(".")
    for index, token in enumerate(tokens):
        if token == "*" and allow_wildcards:
            continue
        if token == ">" and allow_wildcards:
            if index != len(tokens) - 1:
                raise ValueError(f"subject {subject!r}: '>' may only be the last token")
            continue
        if not _SUBJECT_TOKEN_RE.match(token):
            raise ValueError(
                f"subject {subject!r}: token {token!r} is empty or holds a space, '*' or '>'"
            )
    return subject


def check_dns_label(name: str, *, max_length: int = 40) -> str:
    """Return ``name`` if it is a lowercase DNS label short enough to prefix pod names."""
    if not DNS_LABEL_RE.match(name) or len(name) > max_length:
        raise ValueError(
            f"{name!r} is not DNS-safe: use lowercase letters, digits and '-', "
            f"start and end with a letter or digit, at most {max_length} characters"
        )
    return name
