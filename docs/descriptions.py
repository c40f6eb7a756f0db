"""The hand-written half of the references: what each hafd.yaml key and hafctl command is for.

docs/gen.py takes everything else (key names, nesting, types, defaults, required
keys, command options, exit codes) from the code.  Keep each text short and say what
an operator needs at three in the morning: what it does, when to change it, what
goes wrong if it is wrong.  Examples are Python values: gen.py places them at their
key path (`also` adds sibling keys a valid example needs), and tests/test_docs.py
validates each one laid over config/hafd.yaml with hafd.core.configload.parse_config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class D:
    """A config key or section: description, example value, sibling keys the example needs."""

    text: str
    example: Any = None
    also: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Cmd:
    """A hafctl command: description and example command lines (each must parse)."""

    text: str
    examples: tuple[str, ...]


CONFIG_INTRO = """
hafd reads one YAML file, `/etc/hafd/hafd.yaml` by default, identical on every node (the nodes compare a hash of
it and refuse to take over from each other while they differ). It has up to six sections: `cluster` and `nodes`
(required), `resources`, `programs`, `events` and `metrics`. An unknown key is an error that names the key, its
line and the closest known key; `hafctl check-config` lists every problem at once.
"""

MINIMAL = """
cluster:
  name: web
  fencing:
    command: ["/usr/local/sbin/fence-node", "{peer}"]
nodes:
  alpha:
    priority: 100
    links: [192.168.50.1]
  beta:
    priority: 90
    links: [192.168.50.2]
resources:
  vip:
    type: ipaddr
    address: 192.168.1.10/24
    interface: eth0
  web:
    type: service
    unit: nginx
    requires: [vip]
"""

# A complete resource of each type: the examples of its keys are validated inside it.
RESOURCE_EXAMPLES: dict[str, dict[str, Any]] = {
    "drbd": {"type": "drbd", "resource": "r0"},
    "filesystem": {"type": "filesystem", "device": "/dev/drbd/by-res/r0", "directory": "/data", "fstype": "ext3",
                   "requires": ["drbd"]},
    "ipaddr": {"type": "ipaddr", "address": "10.10.101.1/24", "interface": "eth2"},
    "service": {"type": "service", "unit": "isc-dhcp-server", "requires": ["data", "vip"]},
    "process": {"type": "process",
                "command": ["/usr/sbin/dhcpd", "-4", "-f", "-cf", "/etc/dhcp/dhcpd.conf", "-lf", "/data/dhcpd.leases",
                            "eth2"],
                "ready": {"udp_port": 67}, "requires": ["data", "vip"]},
    "ocf": {"type": "ocf", "agent": "heartbeat:IPaddr2", "params": {"ip": "10.10.101.1", "cidr_netmask": "24",
                                                                     "nic": "eth2"}},
    "command": {"type": "command", "start": ["/usr/local/sbin/app", "start"], "stop": ["/usr/local/sbin/app", "stop"],
                "monitor": ["/usr/local/sbin/app", "status"]},
}

_TYPES = {
    "drbd": "Promotes a DRBD resource on the active node (`drbdadm primary`) and demotes it on the others "
            "(`drbdadm secondary`). The monitor reads `drbdadm status`; a StandAlone connection is shown as a DRBD "
            "split brain in `hafctl status`. Configure DRBD's `fence-peer` handler as `hafctl fence-peer` and "
            "`after-resync-target` as `hafctl unfence-peer` (see the hafctl reference).",
    "filesystem": "Mounts `device` on `directory` on the active node and unmounts it elsewhere. Usually requires "
                  "the `drbd` resource that provides the device.",
    "ipaddr": "A virtual IP address: added to `interface` over netlink on the active node, announced with "
              "gratuitous ARP, removed when the node stops. The interface itself stays up.",
    "service": "A system service started and stopped by systemctl (or a SysV init script). Disable it at boot "
               "(`systemctl disable UNIT`): hafd starts it on the active node only.",
    "process": "A foreground program that hafd starts and supervises itself (no init system). An exit is noticed "
               "at once, not at the next monitor.",
    "ocf": "Any OCF resource agent, run unchanged (as Pacemaker runs it): OCF_ROOT, OCF_RESOURCE_INSTANCE and "
           "OCF_RESKEY_<param> for each of `params`. Timeouts come from the agent's meta-data unless `timeout` is set.",
    "command": "Your own start, stop and monitor programs. Monitor exit 0 = running, 7 = stopped, anything else = "
               "failed. Start and stop must be idempotent.",
}

CONFIG: dict[str, D] = {
    # -- cluster -----------------------------------------------------------------------
    "cluster": D(
        "Cluster-wide settings: name, key, heartbeat timing, and what makes a takeover safe (`fencing`, "
        "`tiebreaker`). Must be the same on every node.",
        {"cluster": {"name": "dhcp", "deadtime": 0.36, "fencing": {"command": ["/usr/local/sbin/fence-node", "{peer}"]},
                     "tiebreaker": {"ping": "10.10.101.254"}}},
    ),
    "cluster.name": D("The cluster's name. Heartbeats carry it; it names the cluster in logs, status and events.",
                      "dhcp"),
    "cluster.key_file": D(
        "The shared secret that authenticates heartbeats (HMAC). The same file on every node, mode 0600. "
        "`hafctl keygen` writes a new one; copy it to the other nodes. A wrong key shows as `bad_mac` in "
        "`rejected packets`.", "/etc/hafd/authkey"),
    "cluster.port": D("UDP port of the heartbeats on every link. Open it in the firewall between the nodes.", 694),
    "cluster.interval": D(
        "How often a heartbeat is sent on every link. Smaller = faster detection, more packets.", 0.025),
    "cluster.deadtime": D(
        "A peer is lost after this long without a valid heartbeat on any link; then the takeover starts. Must be "
        "more than 2 x interval; use 10 x or more. `hafd --check-config` prints the expected false failovers a year "
        "for your timings. Raise it if the HA link is lossy or a node stalls (swap, VM pauses). The defaults "
        "(interval 0.025, deadtime 0.36: 14 heartbeats) expect ~0.2 false failovers a year at a sustained 20 % "
        "loss on one link. A fast profile for nodes with CPU to spare: interval 0.006, deadtime 0.093 (15 "
        "heartbeats, ~0.14 a year at 20 % loss), detecting in under 0.1 s for ~5 % of a core instead of ~1.5 %.",
        0.5),
    "cluster.failback": D(
        "false: the service stays where it runs (stickiness). true: a returning node with a higher priority takes "
        "the service back (a second interruption).", False),
    "cluster.state_dir": D(
        "Where hafd keeps what must survive a restart: history.jsonl (`hafctl history`), cluster.json (epoch, "
        "standby, outdated flag), process pid files.", "/var/lib/hafd"),
    "cluster.control_socket": D(
        "The Unix socket hafctl talks to (root only). hafctl reads this key from --config to find it.",
        "/run/hafd/hafd.sock"),
    "cluster.stop_resources_on_exit": D(
        "false: stopping hafd (SIGTERM) leaves the resources running, so `systemctl restart hafd` does not "
        "interrupt the service and the new daemon adopts them. true: hafd stops every resource before it exits "
        "(then the peer may take over at once).", True),
    "cluster.startup_wait": D(
        "At start-up, how long a node waits to hear its peers before it takes the role alone (Corosync's "
        "wait_for_all, bounded). Stops a node that boots alone from starting the service the peer still runs.", 5),
    "cluster.restart_grace": D(
        "After a peer announces a restart (hafd got SIGTERM), how long it stays counted as alive before it is "
        "lost. `systemctl restart hafd` must not cause a failover.", 15),
    "cluster.fencing": D(
        "Optional. A command run before taking over from a LOST peer that may still run resources, so two nodes "
        "never serve at once. Without it (and without a tiebreaker) a node that only lost the HA link may serve "
        "alongside its peer until the link returns (then split brain resolution stops one).",
        {"command": ["/usr/local/sbin/fence-node", "{peer}"], "timeout": 30, "on_failure": "retry"}),
    "cluster.fencing.command": D(
        "argv of the fence program; `{peer}` is replaced by the lost node's name. Exit 0 = the peer is off. "
        "It must power off or isolate the peer (IPMI, PDU, hypervisor API), not just ask it nicely.",
        ["/usr/local/sbin/fence-node", "{peer}"]),
    "cluster.fencing.timeout": D("Seconds before the fence command is killed and counts as failed.", 60,
                                 also={"command": ["/usr/local/sbin/fence-node", "{peer}"]}),
    "cluster.fencing.on_failure": D(
        "What a failed fence does. retry: try again every second, and take over once it succeeds. halt: do not "
        "take over at all until an operator acts (`fencing_halted`).", "halt",
        also={"command": ["/usr/local/sbin/fence-node", "{peer}"]}),
    "cluster.tiebreaker": D(
        "Optional, for two-node clusters. An address each node pings; a node that cannot reach it is not eligible "
        "for the role, so a node cut off from the clients does not take over. Use the clients' gateway.",
        {"ping": "10.10.101.254", "interval": 1, "timeout": 1}),
    "cluster.tiebreaker.ping": D("The address to ping (IPv4 or IPv6).", "10.10.101.254"),
    "cluster.tiebreaker.interval": D("Seconds between two pings.", 2, also={"ping": "10.10.101.254"}),
    "cluster.tiebreaker.timeout": D("Seconds to wait for each answer.", 0.5, also={"ping": "10.10.101.254"}),
    # -- nodes -------------------------------------------------------------------------
    "nodes": D(
        "Every node of the cluster, by name. The local node is the one whose link address is configured on this "
        "host (`hafd --node NAME` overrides).",
        {"nodes": {"nodeone": {"priority": 100, "links": ["10.10.100.1"]},
                   "nodetwo": {"priority": 90, "links": ["10.10.100.2"]}}}),
    "nodes.<name>.priority": D(
        "Higher wins the election when no node holds the role (and with failback: true, takes it back). Ties break "
        "by name.", 100, also={"links": ["10.10.100.1"]}),
    "nodes.<name>.links": D(
        "The node's IP addresses on the HA links, one per link. Heartbeats go over every link; a peer is lost only "
        "when all its links are silent. Add a second link (another NIC, another switch) to survive a link failure. "
        "An address may belong to one node only.", ["10.10.100.1", "192.168.200.1"]),
    # -- resources ---------------------------------------------------------------------
    "resources": D(
        "What the active node runs, by name. A resource starts after everything it `requires` runs, and stops "
        "before it. All resources run on the same (active) node.",
        {"resources": {"vip": RESOURCE_EXAMPLES["ipaddr"],
                       "web": {"type": "service", "unit": "nginx", "requires": ["vip"]}}}),
    "resources.<name>.type": D("The resource type: which agent runs it. Each type's own keys are listed below.",
                               "service", also={"type": "service", "unit": "isc-dhcp-server"}),
    "resources.<name>.requires": D(
        "Resources that must run (on the same node) before this one starts; they stop after it. No cycles. Replaces "
        "Pacemaker's colocation and order constraints.", ["drbd"],
        also={"type": "filesystem", "device": "/dev/drbd/by-res/r0", "directory": "/data"}),
    "resources.<name>.monitor_interval": D(
        "Seconds between two health checks while it runs.", 5, also={"type": "service", "unit": "isc-dhcp-server"}),
    "resources.<name>.timeout": D(
        "Seconds each start, stop or monitor may take before it counts as failed. For `ocf` resources, unset means "
        "the agent's own meta-data timeouts.", 60, also={"type": "service", "unit": "isc-dhcp-server"}),
    "resources.<name>.migration_threshold": D(
        "How many times a failed resource is restarted here within failure_timeout; the next failure gives up on it "
        "on this node and the service moves to the peer. 0 = move at the first failure. (Pacemaker's "
        "migration-threshold N is hafd's N-1.)", 2, also={"type": "service", "unit": "isc-dhcp-server"}),
    "resources.<name>.failure_timeout": D(
        "Seconds after which a failure is forgotten (no longer counts toward migration_threshold).", 600,
        also={"type": "service", "unit": "isc-dhcp-server"}),
    # drbd
    "type.drbd": D(_TYPES["drbd"]),
    "drbd.resource": D("The DRBD resource name, as in /etc/drbd.d/NAME.res (`drbdadm primary NAME`).", "r0"),
    "drbd.force": D(
        "Promote even a disk that is not UpToDate (`--force`). Leave false: true can serve stale data.", False),
    # filesystem
    "type.filesystem": D(_TYPES["filesystem"]),
    "filesystem.device": D("What to mount: a device path, or LABEL=/UUID= form.", "/dev/drbd/by-res/r0"),
    "filesystem.directory": D("The mount point (must exist on every node).", "/data"),
    "filesystem.fstype": D("The filesystem type for mount -t; unset = let mount detect it.", "ext4"),
    "filesystem.options": D("mount -o options.", "noatime,nodiratime"),
    "filesystem.kill_holders": D(
        "On stop, if umount says the filesystem is busy, kill the processes that keep it busy (SIGTERM, then SIGKILL; "
        "as Pacemaker's force_unmount) and try again, so the unmount and the failover do not hang.", False),
    # ipaddr
    "type.ipaddr": D(_TYPES["ipaddr"]),
    "ipaddr.address": D("The virtual address with its prefix length.", "10.10.101.1/24"),
    "ipaddr.interface": D("The interface that carries it (must exist and be up on every node).", "eth2"),
    "ipaddr.arp_count": D("Gratuitous ARPs sent after adding the address (0 = none).", 5),
    "ipaddr.arp_interval": D("Seconds between two gratuitous ARPs.", 0.5),
    # service
    "type.service": D(_TYPES["service"]),
    "service.unit": D("The systemd unit (or, with init: sysv, the /etc/init.d script name).", "isc-dhcp-server"),
    "service.init": D("systemd: systemctl start/stop/is-active. sysv: service NAME start/stop/status.", "sysv"),
    # process
    "type.process": D(_TYPES["process"]),
    "process.command": D("argv of the program; it must stay in the foreground.",
                         ["/usr/sbin/dhcpd", "-4", "-f", "-cf", "/etc/dhcp/dhcpd.conf", "eth2"]),
    "process.ready": D(
        "How hafd knows the program serves, instead of a fixed sleep: exactly one of tcp_port, udp_port or file. "
        "Unset: started as soon as it runs.", {"udp_port": 67, "timeout": 10}),
    "process.ready.tcp_port": D("Ready when something listens on this TCP port.", 8080),
    "process.ready.udp_port": D("Ready when a socket is bound to this UDP port.", 67),
    "process.ready.file": D("Ready when this file exists (e.g. a pid file the program writes).",
                            "/run/dhcpd.pid"),
    "process.ready.timeout": D("Seconds to wait for readiness before the start counts as failed.", 20,
                               also={"udp_port": 67}),
    "process.stop_signal": D("The signal that asks the program to stop; SIGKILL follows after `timeout`.", "INT"),
    # ocf
    "type.ocf": D(_TYPES["ocf"]),
    "ocf.agent": D("PROVIDER:TYPE of the agent under programs.ocf_root/resource.d/ (an `ocf:` prefix is accepted).",
                   "heartbeat:IPaddr2"),
    "ocf.params": D("The agent's parameters; each becomes OCF_RESKEY_<name>.",
                    {"ip": "10.10.101.1", "cidr_netmask": "24", "nic": "eth2"}),
    # command
    "type.command": D(_TYPES["command"]),
    "command.start": D("argv that starts the resource; exit 0 = started.", ["/usr/local/sbin/app", "start"]),
    "command.stop": D("argv that stops it; exit 0 = stopped (also when it was not running).",
                      ["/usr/local/sbin/app", "stop"]),
    "command.monitor": D("argv that checks it: exit 0 running, 7 stopped, other failed.",
                         ["/usr/local/sbin/app", "status"]),
    # -- programs ----------------------------------------------------------------------
    "programs": D(
        "Paths of the external programs hafd runs. The defaults are Debian 12's; change them only on other systems "
        "or to put a wrapper in between.", {"programs": {"drbdadm": "/usr/sbin/drbdadm"}}),
    "programs.drbdadm": D("drbdadm, for `drbd` resources.", "/usr/local/sbin/drbdadm"),
    "programs.mount": D("mount, for `filesystem` resources.", "/usr/bin/mount"),
    "programs.umount": D("umount, for `filesystem` resources.", "/usr/bin/umount"),
    "programs.systemctl": D("systemctl, for `service` resources with init: systemd.", "/usr/bin/systemctl"),
    "programs.service": D("service, for `service` resources with init: sysv.", "/usr/bin/service"),
    "programs.ping": D("ping, for the tiebreaker.", "/usr/bin/ping"),
    "programs.ocf_root": D("OCF_ROOT: the agents are OCF_ROOT/resource.d/PROVIDER/TYPE.", "/usr/lib/ocf"),
    # -- events ------------------------------------------------------------------------
    "events": D(
        "Hooks: your programs run on hafd's events (role changes, failures, lost peers...) to alert or log. They "
        "get the event as HAFD_* environment variables (HAFD_EVENT, HAFD_NODE, HAFD_REASON, HAFD_AT, ...) and as "
        "one JSON object on stdin. They run in the background with a timeout and never delay a failover.",
        {"events": {"hooks": [{"command": ["/usr/local/bin/page-oncall"], "on": ["role_changed", "fencing_failed"],
                               "timeout": 10}]}}),
    "events.hooks": D("The hooks, each a mapping with command, on and timeout.",
                      [{"command": ["/usr/local/bin/alert"]}]),
    "events.hooks[].command": D("argv of the hook program.", ["/usr/local/bin/alert", "--channel", "ops"]),
    "events.hooks[].on": D("The events that run it (names in the table at the end of this page).",
                           ["role_changed", "resource_failed", "peer_lost"],
                           also={"command": ["/usr/local/bin/alert"]}),
    "events.hooks[].timeout": D("Seconds before the hook is killed (its process group).", 5,
                                also={"command": ["/usr/local/bin/alert"]}),
    "events.max_concurrent": D(
        "At most this many hooks run at once; more wait in a bounded queue (overflow is dropped and logged as "
        "`hook_dropped`).", 2),
    # -- metrics -----------------------------------------------------------------------
    "metrics": D(
        "An optional Prometheus endpoint (off unless `listen` is set): role, peers and links, heartbeat loss and "
        "latency, resource states, operation durations, failovers.", {"metrics": {"listen": "127.0.0.1:9469"}}),
    "metrics.listen": D(
        "HOST:PORT to serve /metrics on (an IP address; [::1]:9469 for IPv6). Bind to a management address, not "
        "to the clients' network. A taken port is logged (`metrics_listen_failed`) and does not stop hafd.",
        "127.0.0.1:9469"),
}
for _name, _example in RESOURCE_EXAMPLES.items():
    CONFIG[f"type.{_name}"] = D(_TYPES[_name], {"resources": {"NAME": _example}})


HAFCTL_INTRO = """
`hafctl` controls and inspects hafd. Most commands talk to the daemon on this node over its control socket
(root only); `check-config`, `keygen`, `import-crm` and `simulate --config` work offline. Commands that change
something (standby, failover, reload...) act cluster-wide where it makes sense and answer when it is done.
"""

EXIT_NOTE = """
`fence-peer` and `unfence-peer` are DRBD handlers: their exit code is DRBD's answer instead (4 peer outdated,
5 peer unreachable and not fenced, 6 this node must outdate itself, 7 peer fenced, 1 hafd could not be asked).
"""

HAFD_DAEMON = """
The daemon itself: one per node, normally run by systemd (`systemctl start hafd`, unit in systemd/hafd.service).
Logs go to stderr: JSON lines under systemd (read them with `journalctl -u hafd -o cat`), readable text on a
terminal. Exit status 1: invalid configuration or key, or another hafd owns the control socket.
"""

HAFCTL: dict[str, Cmd] = {
    "status": Cmd(
        "Who is active, why (one sentence), every node with its links, every resource with its state, the "
        "timeline of the last takeover, and warnings. The first thing to run. docs/troubleshooting.md explains "
        "each line. `--json` gives the daemon's full status for scripts and monitoring.",
        ("hafctl status", "hafctl status --json | jq .active_node")),
    "standby": Cmd(
        "Take a node out of service: it stops its resources and is not eligible; if it was active, the peer takes "
        "over (a planned switchover). Persists across daemon restarts until `unstandby`. Works for any node of "
        "the cluster (forwarded over the HA link).",
        ("hafctl standby", "hafctl standby nodeone")),
    "unstandby": Cmd("Bring a node back into service (eligible again). It takes the service only if no node "
                     "holds it, or with failback: true and a higher priority.",
                     ("hafctl unstandby", "hafctl unstandby nodeone")),
    "cleanup": Cmd(
        "Forget failure counts and errors (and a recorded split brain), so a given-up resource is retried and "
        "the node is eligible again. Fix the cause first.",
        ("hafctl cleanup dhcpd", "hafctl cleanup")),
    "reload": Cmd(
        "Re-read the configuration file. A file that does not validate is rejected with every error and nothing "
        "changes. Changed resources are restarted; changes to links, port, timings, key or paths take effect at "
        "the next daemon restart (the answer says which). Reload every node: they must agree.",
        ("hafctl reload",)),
    "failover": Cmd(
        "Planned switchover: the active node stops its resources, the target starts them right after. Refused if "
        "the target is offline, or if failback would move the service straight back.",
        ("hafctl failover", "hafctl failover --to nodetwo")),
    "history": Cmd(
        "Past transitions, oldest first: time, node, from -> to, why, who decided, and how long each phase of a "
        "takeover took. Kept in state_dir/history.jsonl across daemon restarts (bounded).",
        ("hafctl history", "hafctl history -n 10", "hafctl history --json")),
    "fence-peer": Cmd(
        "DRBD's fence-peer handler (`handlers { fence-peer \"/usr/local/bin/hafctl fence-peer\"; }`). When DRBD "
        "loses its replication link, hafd answers whether the peer is still alive over the HA links (it is then "
        "marked outdated and may not take over: exit 4), was fenced (7), or is unreachable (5). Not for manual use.",
        ("hafctl fence-peer --resource r0 --peer nodetwo",)),
    "unfence-peer": Cmd(
        "DRBD's after-resync-target handler: this node's data is in sync again, it may take over again (clears "
        "the outdated mark). Run by DRBD; by hand only after you checked the resync finished.",
        ("hafctl unfence-peer --resource r0",)),
    "check-config": Cmd(
        "Validate a configuration file without a daemon: every error with file, line and key path, then warnings. "
        "Exit 0 valid, 1 invalid. Run it before `hafctl reload`.",
        ("hafctl check-config", "hafctl check-config /etc/hafd/hafd.yaml.new")),
    "keygen": Cmd(
        "Write a new random cluster key, mode 0600, atomically; refuses to overwrite without --force. Copy the file "
        "to every node (same path) and restart hafd on all of them.",
        ("hafctl keygen", "hafctl keygen /etc/hafd/authkey --force")),
    "import-crm": Cmd(
        "Translate a Pacemaker configuration (crm shell commands, one per line, or `crm configure show` output) "
        "and Corosync's nodelist into hafd.yaml on stdout. What it cannot translate is printed on stderr with its "
        "line and listed at the top of the output. See docs/migrating-from-pacemaker.md.",
        ("crm configure show > crm.txt", "hafctl import-crm crm.txt --corosync /etc/corosync/corosync.conf > hafd.yaml",
         "hafctl import-crm --strict crm.txt")),
    "simulate": Cmd(
        "What the cluster would do after some events, and why, step by step, without touching anything: the "
        "daemon's own decision code on a virtual clock. From the running daemon's state, or with --config from a "
        "cold start of a file (try a config change before you deploy it).",
        ("hafctl simulate node-lost nodeone",
         "hafctl simulate --config /etc/hafd/hafd.yaml resource-failed dhcpd x4",
         "hafctl simulate --config /etc/hafd/hafd.yaml link-down nodeone 10.10.100.1 node-lost nodeone")),
}
