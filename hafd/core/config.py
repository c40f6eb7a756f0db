"""The typed model of hafd.yaml.

Everything downstream (planner, engine, agents, daemon, CLI) reads these frozen
dataclasses, never raw YAML, so a value that reached them has been validated once,
in one place (`hafd.core.configload`).  Defaults live here, next to the field they
belong to, so the reference docs and the code cannot disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping

from hafd.paths import DEFAULT_CONFIG_PATH  # noqa: E402,F401 - re-exported


class OnFailure(enum.Enum):
    RETRY = "retry"
    HALT = "halt"


@dataclass(frozen=True)
class Fencing:
    command: tuple[str, ...]
    timeout: float = 30.0
    on_failure: OnFailure = OnFailure.RETRY


@dataclass(frozen=True)
class Tiebreaker:
    ping: str
    interval: float = 1.0
    timeout: float = 1.0


@dataclass(frozen=True)
class Cluster:
    name: str
    key_file: str = "/etc/hafd/authkey"
    port: int = 694
    interval: float = 0.025
    deadtime: float = 0.36
    failback: bool = False
    state_dir: str = "/var/lib/hafd"
    control_socket: str = "/run/hafd/hafd.sock"
    # On SIGTERM leave resources running (so `systemctl restart hafd` does not
    # interrupt service) unless the operator asks for a clean stop.
    stop_resources_on_exit: bool = False
    # At start-up, how long a node that did not hold the role waits to hear its peers
    # before it takes the role alone (Corosync's wait_for_all lesson, bounded).
    startup_wait: float = 2.0
    # After a peer says "restarting" (SIGTERM), how long it is held alive before it
    # counts as lost: `systemctl restart hafd` must not cause a failover.
    restart_grace: float = 10.0
    fencing: Fencing | None = None
    tiebreaker: Tiebreaker | None = None


# Events hooks can subscribe to (`events.hooks[].on`), with what each means: one table
# so the config check, the daemon and the docs agree on the names.
EVENT_NAMES: Mapping[str, str] = {
    "role_changed": "this node's role changed (e.g. standby -> active, with the reason and the takeover timeline)",
    "resource_failed": "an operation on a resource failed, or its monitor found it broken or exited",
    "peer_lost": "a peer stopped sending heartbeats on every link (or said goodbye for good)",
    "peer_up": "a peer is heard again (or for the first time)",
    "link_down": "one HA link to a peer went silent",
    "link_up": "an HA link to a peer carries heartbeats again",
    "fenced": "a lost peer was fenced",
    "fencing_failed": "fencing a lost peer failed (retried, or halted)",
    "split_brain": "more than one node claimed the role",
    "operator": "an operator request (standby, unstandby, failover, cleanup, reload)",
    "hafd_started": "the daemon started",
}


@dataclass(frozen=True)
class Hook:
    """A program run on matching events: the event in HAFD_* variables and as JSON on stdin."""

    command: tuple[str, ...]
    on: tuple[str, ...] = tuple(EVENT_NAMES)
    timeout: float = 10.0
    line: int = 0  # where the hook is defined, for log messages


@dataclass(frozen=True)
class Events:
    hooks: tuple[Hook, ...] = ()
    # Hooks run in the background; at most this many at once, the rest wait in a bounded queue.
    max_concurrent: int = 4


@dataclass(frozen=True)
class Metrics:
    """The Prometheus endpoint (off unless `metrics.listen` is set)."""

    host: str
    port: int


@dataclass(frozen=True)
class Node:
    name: str
    priority: int = 0
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class Programs:
    """Paths of the external programs hafd runs (Debian 12's locations by default)."""

    drbdadm: str = "/usr/sbin/drbdadm"
    mount: str = "/bin/mount"
    umount: str = "/bin/umount"
    systemctl: str = "/bin/systemctl"
    service: str = "/usr/sbin/service"
    ping: str = "/bin/ping"
    ocf_root: str = "/usr/lib/ocf"  # OCF_ROOT: resource.d/PROVIDER/TYPE are the agents


@dataclass(frozen=True)
class ReadyCheck:
    """How a `process` resource proves it is serving, instead of a fixed sleep."""

    tcp_port: int | None = None
    udp_port: int | None = None
    file: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class DrbdParams:
    resource: str
    force: bool = False  # promote even a disk that is not UpToDate (never by default)


@dataclass(frozen=True)
class FilesystemParams:
    device: str
    directory: str
    fstype: str | None = None
    options: str = ""
    kill_holders: bool = True  # as Pacemaker's Filesystem force_unmount


@dataclass(frozen=True)
class IpaddrParams:
    address: str  # "10.10.101.1/24"
    interface: str
    arp_count: int = 3
    arp_interval: float = 0.2


@dataclass(frozen=True)
class ServiceParams:
    unit: str
    init: str = "systemd"  # "systemd" (systemctl) or "sysv" (service SCRIPT start|stop|status)


@dataclass(frozen=True)
class ProcessParams:
    command: tuple[str, ...]
    ready: ReadyCheck | None = None
    stop_signal: str = "TERM"


@dataclass(frozen=True)
class CommandParams:
    start: tuple[str, ...]
    stop: tuple[str, ...]
    monitor: tuple[str, ...]


@dataclass(frozen=True)
class OcfParams:
    """An OCF resource agent run unchanged: `agent` is PROVIDER:TYPE (e.g. heartbeat:IPaddr2),
    `params` become OCF_RESKEY_* variables."""

    agent: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return self.agent.split(":")[-2]

    @property
    def kind(self) -> str:
        return self.agent.split(":")[-1]


ResourceParams = OcfParams | DrbdParams | FilesystemParams | IpaddrParams | ServiceParams | ProcessParams | CommandParams


@dataclass(frozen=True)
class Resource:
    """Keys common to all resource types; the type-specific ones are in `params`.

    `params` is the typed, validated dataclass of the resource's type, so agents get
    plain values and never YAML.
    """

    name: str
    type: str
    requires: tuple[str, ...] = ()
    monitor_interval: float = 10.0
    timeout: float = 20.0
    migration_threshold: int = 3
    failure_timeout: float = 300.0
    params: ResourceParams | None = None
    # Whether `timeout` was written in the file: an OCF agent's meta-data advises
    # timeouts, used only when the operator gave none.
    timeout_set: bool = False
    line: int = 0  # where the resource is defined, for messages


@dataclass(frozen=True)
class Config:
    cluster: Cluster
    nodes: Mapping[str, Node]
    resources: Mapping[str, Resource]
    programs: Programs = Programs()
    path: str = DEFAULT_CONFIG_PATH
    local_node: str | None = None
    # Legal but risky settings ("file:line: path: message"), for the daemon and `hafctl check` to show.
    warnings: tuple[str, ...] = ()
    events: Events = Events()
    metrics: Metrics | None = None

    def peers(self) -> list[Node]:
        return [n for name, n in self.nodes.items() if name != self.local_node]
