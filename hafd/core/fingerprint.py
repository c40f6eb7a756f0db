"""The hash of the cluster-relevant configuration, carried in every heartbeat.

Two nodes that disagree about resources, nodes or timings would make different
decisions from the same facts, so a mismatch is shown on both sides and blocks a
takeover by the mismatched node.  Only what must agree is hashed: local program
paths, the socket path, the state directory and log settings may differ per node.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Any

from hafd.core.config import Config

LOCAL_ONLY_CLUSTER_KEYS = ("key_file", "state_dir", "control_socket", "stop_resources_on_exit")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "line"}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_hash(cfg: Config) -> bytes:
    cluster = {k: v for k, v in _plain(cfg.cluster).items() if k not in LOCAL_ONLY_CLUSTER_KEYS}
    doc = {
        "cluster": cluster,
        "nodes": _plain(dict(cfg.nodes)),
        "resources": _plain(dict(cfg.resources)),
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(canonical).digest()
