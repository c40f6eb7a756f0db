"""Logging set-up: structlog straight to stderr, readable on a terminal, JSON under systemd.

journald stores one JSON object per line as is, so production logs stay machine
readable (timestamps in UTC ISO-8601, tracebacks as data); a terminal gets structlog's
console renderer.  No stdlib `logging` in the path: the filtering bound logger drops
disabled levels at the call, which matters at 40 heartbeats a second.

Secrets never reach the log: `redact_secrets` blanks values whose key names a secret
(`key`, `authkey`, `secret`, `password`, `token`...), also inside nested dicts, and
tracebacks are rendered without frame locals (a local may hold the key).
"""

from __future__ import annotations

import re
import sys
from typing import Any, MutableMapping, TextIO

import structlog
import structlog.tracebacks

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("auto", "console", "json")
REDACTED = "<redacted>"

_SECRET_WORDS = frozenset({"key", "authkey", "secret", "password", "passwd", "passphrase", "token", "psk", "hmac"})
# `key_file: /etc/hafd/authkey` is where the secret lives, not the secret: keep it visible.
_REFERENCE_WORDS = frozenset({"file", "path", "dir", "name", "id", "len", "length", "size"})
_SPLIT = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 4


def _is_secret(key: object) -> bool:
    if not isinstance(key, str):
        return False
    words = set(_SPLIT.split(key.lower()))
    return bool(words & _SECRET_WORDS) and not words & _REFERENCE_WORDS


def _redact(value: Any, depth: int) -> Any:
    if depth >= _MAX_DEPTH or not isinstance(value, dict):
        return value
    return {k: REDACTED if _is_secret(k) else _redact(v, depth + 1) for k, v in value.items()}


def redact_secrets(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key == "event":
            continue
        if _is_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(event_dict[key], dict):
            event_dict[key] = _redact(event_dict[key], 1)
    return event_dict


def configure_logging(
    fmt: str = "auto", level: str = "info", *, cache: bool = True, stream: TextIO | None = None
) -> None:
    """Configure structlog once at start-up.

    `cache=False` for tests: cached loggers would not see a later `configure()` or
    `capture_logs()`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        redact_secrets,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "console":
        processors.append(
            structlog.dev.ConsoleRenderer(colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback)
        )
    else:
        # Tracebacks as data, but without frame locals: a local may hold the cluster key.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False, use_rich=False)
        )
        processors += [tracebacks, structlog.processors.JSONRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level.lower()),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        context_class=dict,
        cache_logger_on_first_use=cache,
    )
