"""hafd.yaml loading: every rejection names file:line, key path and the mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hafd.core.config import (
    CommandParams,
    Config,
    DrbdParams,
    FilesystemParams,
    IpaddrParams,
    OnFailure,
    ProcessParams,
    Programs,
    ReadyCheck,
    ServiceParams,
)
from hafd.core.configload import RESOURCE_TYPES, ConfigError, ConfigIssue, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "config" / "hafd.yaml"
DESIGN = Path("/work/shared/design/hafd.yaml")

_NODES = "nodes:\n  a: {links: [192.0.2.1]}\n  b: {links: [192.0.2.2]}\n"


def with_cluster(extra: str) -> str:
    """A config whose cluster section has `extra` from line 3 on."""
    return "cluster:\n  name: c\n" + textwrap.indent(textwrap.dedent(extra), "  ") + _NODES


def with_nodes(nodes: str) -> str:
    """A config whose node entries start at line 4."""
    return "cluster:\n  name: c\nnodes:\n" + textwrap.indent(textwrap.dedent(nodes), "  ")


def with_resources(resources: str) -> str:
    """A config whose resource entries start at line 6."""
    head = "cluster:\n  name: c\nnodes:\n  a: {links: [192.0.2.1]}\nresources:\n"
    return head + textwrap.indent(textwrap.dedent(resources), "  ")


def issues_of(text: str, **kw: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, **kw)  # type: ignore[arg-type]
    return [str(i) for i in info.value.issues]


REJECTIONS: list[tuple[str, str, str]] = [
    # -- document and top level
    ("malformed", "cluster: [a\nnodes: {}\n",
     "hafd.yaml:2: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 1)"),
    ("tab indent", "cluster:\n\tname: c\n",
     "hafd.yaml:2: invalid YAML: found character '\\t' that cannot start any token"),
    ("two documents", "a: 1\n---\nb: 2\n",
     "hafd.yaml:2: invalid YAML: expected a single document in the stream, but found another document"),
    ("empty", "# nothing\n", "hafd.yaml: the file is empty; it needs the cluster and nodes sections"),
    ("top is a list", "- cluster\n", "hafd.yaml:1: expected a mapping, got a list"),
    ("missing cluster", _NODES, "hafd.yaml:1: missing required key 'cluster'"),
    ("missing nodes", "cluster: {name: c}\n", "hafd.yaml:1: missing required key 'nodes'"),
    ("unknown top key", "cluster: {name: c}\n" + _NODES + "resource: {}\n",
     "hafd.yaml:5: resource: unknown key 'resource' (did you mean 'resources'?); "
     "known keys: cluster, events, metrics, nodes, programs, resources"),
    ("duplicate top key", "cluster: {name: c}\n" + _NODES + "cluster: {name: d}\n",
     "hafd.yaml:5: cluster: duplicate key 'cluster' (first defined at line 1)"),
    ("merge key", "cluster: {name: c, <<: {port: 1}}\n" + _NODES,
     "hafd.yaml:1: cluster.<<: YAML merge keys ('<<') are not supported; write the keys out"),
    ("non-text key", "cluster: {name: c, [a]: 1}\n" + _NODES,
     "hafd.yaml:1: cluster.<key>: keys must be plain names, got a list"),
    # -- cluster
    ("cluster not a mapping", "cluster: dhcp\n" + _NODES,
     "hafd.yaml:1: cluster: expected a mapping, got a string 'dhcp'"),
    ("cluster name missing", "cluster:\n  port: 694\n" + _NODES, "hafd.yaml:1: cluster: missing required key 'name'"),
    ("cluster name bad", "cluster:\n  name: my cluster\n" + _NODES,
     "hafd.yaml:2: cluster.name: cluster name 'my cluster' may only contain letters, digits, '_', '.' and '-'"),
    ("cluster name number", "cluster:\n  name: 12\n" + _NODES,
     "hafd.yaml:2: cluster.name: expected a string, got an integer 12 (put it in quotes to make it a string: '12')"),
    ("cluster unknown key", with_cluster("deadtim: 1\n"),
     "hafd.yaml:3: cluster.deadtim: unknown key 'deadtim' (did you mean 'deadtime'?); known keys: control_socket, "
     "deadtime, failback, fencing, interval, key_file, name, port, restart_grace, startup_wait, state_dir, stop_resources_on_exit, tiebreaker"),
    ("port zero", with_cluster("port: 0\n"), "hafd.yaml:3: cluster.port: must be between 1 and 65535, got 0"),
    ("port big", with_cluster("port: 65536\n"), "hafd.yaml:3: cluster.port: must be between 1 and 65535, got 65536"),
    ("port bool", with_cluster("port: true\n"), "hafd.yaml:3: cluster.port: expected an integer, got a boolean true"),
    ("port float", with_cluster("port: 694.5\n"), "hafd.yaml:3: cluster.port: expected an integer, got a number 694.5"),
    ("port quoted", with_cluster("port: '694'\n"),
     "hafd.yaml:3: cluster.port: expected an integer, got a string '694'"),
    ("interval zero", with_cluster("interval: 0\n"), "hafd.yaml:3: cluster.interval: must be greater than 0, got 0"),
    ("interval negative", with_cluster("interval: -0.5\n"),
     "hafd.yaml:3: cluster.interval: must be greater than 0, got -0.5"),
    ("interval bool", with_cluster("interval: yes\n"),
     "hafd.yaml:3: cluster.interval: expected a number, got a boolean yes"),
    ("explicit bool tag", with_cluster("failback: !!bool maybe\n"),
     "hafd.yaml:3: cluster.failback: cannot read 'maybe' as a boolean (true or false)"),
    ("explicit int tag, empty", with_cluster("port: !!int ''\n"),
     "hafd.yaml:3: cluster.port: cannot read '' as an integer"),
    ("explicit int tag, not a number", with_cluster("port: !!int 0x\n"),
     "hafd.yaml:3: cluster.port: cannot read '0x' as an integer"),
    ("explicit float tag", with_cluster("interval: !!float fast\n"),
     "hafd.yaml:3: cluster.interval: cannot read 'fast' as a number"),
    ("custom tag", with_cluster("interval: !seconds 5\n"),
     "hafd.yaml:3: cluster.interval: expected a number, got a value tagged !seconds 5"),
    ("interval inf", with_cluster("interval: .inf\n"),
     "hafd.yaml:3: cluster.interval: must be a finite number, got .inf"),
    ("interval text", with_cluster("interval: fast\n"),
     "hafd.yaml:3: cluster.interval: expected a number, got a string 'fast'"),
    ("deadtime too short", with_cluster("interval: 0.1\ndeadtime: 0.2\n"),
     "hafd.yaml:4: cluster.deadtime: deadtime 0.2 <= 2 x interval 0.1 makes no sense: one late heartbeat would "
     "declare the peer lost; use at least 10 x interval"),
    ("deadtime vs default interval", with_cluster("deadtime: 0.04\n"),
     "hafd.yaml:3: cluster.deadtime: deadtime 0.04 <= 2 x interval 0.025 makes no sense: one late heartbeat would "
     "declare the peer lost; use at least 10 x interval"),
    ("failback not bool", with_cluster("failback: 1\n"),
     "hafd.yaml:3: cluster.failback: expected a boolean (true or false), got an integer 1"),
    ("stop_resources_on_exit not bool", with_cluster("stop_resources_on_exit: 'no'\n"),
     "hafd.yaml:3: cluster.stop_resources_on_exit: expected a boolean (true or false), got a string 'no'"),
    ("key_file relative", with_cluster("key_file: authkey\n"),
     "hafd.yaml:3: cluster.key_file: must be an absolute path (starting with /), got 'authkey'"),
    ("state_dir empty", with_cluster("state_dir: ''\n"), "hafd.yaml:3: cluster.state_dir: must not be empty"),
    ("control_socket null", with_cluster("control_socket:\n"),
     "hafd.yaml:3: cluster.control_socket: expected a string, got null (an empty value)"),
    ("fencing shell string", with_cluster("fencing:\n  command: /sbin/fence-node {peer}\n"),
     "hafd.yaml:4: cluster.fencing.command: must be an argv list, not a shell string "
     "(e.g. [\"/usr/local/sbin/fence-node\", \"{peer}\"])"),
    ("fencing empty argv", with_cluster("fencing:\n  command: []\n"),
     "hafd.yaml:4: cluster.fencing.command: must not be empty: give the program and its arguments"),
    ("fencing argv of mapping", with_cluster("fencing:\n  command: [/sbin/f, {a: b}]\n"),
     "hafd.yaml:4: cluster.fencing.command[1]: expected a string, got a mapping"),
    ("fencing argv empty program", with_cluster("fencing:\n  command: ['', x]\n"),
     "hafd.yaml:4: cluster.fencing.command[0]: the program must not be empty"),
    ("fencing command number", with_cluster("fencing:\n  command: 3\n"),
     "hafd.yaml:4: cluster.fencing.command: expected an argv list of strings, got an integer 3"),
    ("fencing no command", with_cluster("fencing:\n  timeout: 3\n"),
     "hafd.yaml:3: cluster.fencing: missing required key 'command'"),
    ("fencing on_failure", with_cluster("fencing:\n  command: [/sbin/f]\n  on_failure: retyr\n"),
     "hafd.yaml:5: cluster.fencing.on_failure: must be one of retry | halt, got 'retyr' (did you mean 'retry'?)"),
    ("fencing timeout", with_cluster("fencing:\n  command: [/sbin/f]\n  timeout: 0\n"),
     "hafd.yaml:5: cluster.fencing.timeout: must be greater than 0, got 0"),
    ("fencing unknown key", with_cluster("fencing:\n  command: [/sbin/f]\n  comand: [x]\n"),
     "hafd.yaml:5: cluster.fencing.comand: unknown key 'comand' (did you mean 'command'?); "
     "known keys: command, on_failure, timeout"),
    ("tiebreaker ping bad", with_cluster("tiebreaker:\n  ping: gateway\n"),
     "hafd.yaml:4: cluster.tiebreaker.ping: expected an IPv4 or IPv6 address, got 'gateway'"),
    ("tiebreaker ping missing", with_cluster("tiebreaker: {interval: 1}\n"),
     "hafd.yaml:3: cluster.tiebreaker: missing required key 'ping'"),
    ("tiebreaker interval", with_cluster("tiebreaker: {ping: 192.0.2.9, interval: 0}\n"),
     "hafd.yaml:3: cluster.tiebreaker.interval: must be greater than 0, got 0"),
    ("tiebreaker timeout", with_cluster("tiebreaker: {ping: 192.0.2.9, timeout: -1}\n"),
     "hafd.yaml:3: cluster.tiebreaker.timeout: must be greater than 0, got -1"),
    # -- nodes
    ("no nodes", "cluster: {name: c}\nnodes: {}\n", "hafd.yaml:2: nodes: at least one node is needed"),
    ("nodes empty value", "cluster: {name: c}\nnodes:\n", "hafd.yaml:2: nodes: at least one node is needed"),
    ("nodes a list", "cluster: {name: c}\nnodes: [a, b]\n", "hafd.yaml:2: nodes: expected a mapping, got a list"),
    ("node name bad", with_nodes("node one: {links: [192.0.2.1]}\n"),
     "hafd.yaml:4: nodes.node one: node name 'node one' may only contain letters, digits, '_', '.' and '-'"),
    ("node links missing", with_nodes("a:\n  priority: 1\n"), "hafd.yaml:4: nodes.a: missing required key 'links'"),
    ("node links empty", with_nodes("a:\n  links: []\n"),
     "hafd.yaml:5: nodes.a.links: needs at least one link address"),
    ("node links string", with_nodes("a:\n  links: 192.0.2.1\n"),
     "hafd.yaml:5: nodes.a.links: expected a list of IP addresses, got a string '192.0.2.1' (write [192.0.2.1])"),
    ("node link bad", with_nodes("a:\n  links:\n    - 192.0.2.1\n    - 192.0.2.300\n"),
     "hafd.yaml:7: nodes.a.links[1]: expected an IPv4 or IPv6 address, got '192.0.2.300'"),
    ("node link with prefix", with_nodes("a:\n  links: [192.0.2.1/24]\n"),
     "hafd.yaml:5: nodes.a.links[0]: expected an IPv4 or IPv6 address, got '192.0.2.1/24'"),
    ("node link twice", with_nodes("a:\n  links:\n    - 192.0.2.1\n    - 192.0.2.1\n"),
     "hafd.yaml:7: nodes.a.links[1]: 192.0.2.1 is listed twice (line 6)"),
    ("link shared by nodes", with_nodes("a: {links: [192.0.2.1]}\nb: {links: [192.0.2.2, 192.0.2.1]}\n"),
     "hafd.yaml:5: nodes.b.links[1]: 192.0.2.1 is already a link address of node a (line 4)"),
    ("ipv6 link shared in another spelling", with_nodes("a: {links: ['2001:db8::1']}\nb: {links: ['2001:DB8:0::1']}\n"),
     "hafd.yaml:5: nodes.b.links[0]: 2001:db8::1 is already a link address of node a (line 4)"),
    ("priority text", with_nodes("a:\n  priority: high\n  links: [192.0.2.1]\n"),
     "hafd.yaml:5: nodes.a.priority: expected an integer, got a string 'high'"),
    ("priority bool", with_nodes("a:\n  priority: true\n  links: [192.0.2.1]\n"),
     "hafd.yaml:5: nodes.a.priority: expected an integer, got a boolean true"),
    ("priority float", with_nodes("a:\n  priority: 1.5\n  links: [192.0.2.1]\n"),
     "hafd.yaml:5: nodes.a.priority: expected an integer, got a number 1.5"),
    ("node unknown key", with_nodes("a:\n  prority: 1\n  links: [192.0.2.1]\n"),
     "hafd.yaml:5: nodes.a.prority: unknown key 'prority' (did you mean 'priority'?); known keys: links, priority"),
    ("duplicate node", with_nodes("a: {links: [192.0.2.1]}\na: {links: [192.0.2.2]}\n"),
     "hafd.yaml:5: nodes.a: duplicate key 'a' (first defined at line 4)"),
    # -- resources: common keys
    ("resources a list", with_resources("- a\n").replace("resources:\n  - a", "resources: [a]"),
     "hafd.yaml:5: resources: expected a mapping, got a list"),
    ("resource not a mapping", with_resources("a: drbd\n"),
     "hafd.yaml:6: resources.a: expected a mapping, got a string 'drbd'"),
    ("resource name bad", with_resources("'my res': {type: drbd, resource: r0}\n"),
     "hafd.yaml:6: resources.my res: resource name 'my res' may only contain letters, digits, '_', '.' and '-'"),
    ("type missing", with_resources("a:\n  resource: r0\n"), "hafd.yaml:6: resources.a: missing required key 'type'"),
    ("type unknown", with_resources("a:\n  type: drdb\n  resource: r0\n"),
     "hafd.yaml:7: resources.a.type: unknown type 'drdb' (did you mean 'drbd'?); "
     "known types: command, drbd, filesystem, ipaddr, ocf, process, service"),
    ("type not text", with_resources("a:\n  type: [drbd]\n"),
     "hafd.yaml:7: resources.a.type: expected a string, got a list"),
    ("type-specific key misspelt", with_resources("a:\n  type: drbd\n  resourse: r0\n"),
     "hafd.yaml:8: resources.a.resourse: unknown key 'resourse' (did you mean 'resource'?); known keys: "
     "failure_timeout, force, migration_threshold, monitor_interval, requires, resource, timeout, type"),
    ("key of another type", with_resources("a:\n  type: drbd\n  resource: r0\n  unit: x\n"),
     "hafd.yaml:9: resources.a.unit: unknown key 'unit'; known keys: "
     "failure_timeout, force, migration_threshold, monitor_interval, requires, resource, timeout, type"),
    ("requires unknown", with_resources(
        "data: {type: drbd, resource: r0}\ndhcpd:\n  type: service\n  unit: x\n  requires: [dat]\n"),
     "hafd.yaml:10: resources.dhcpd.requires: unknown resource 'dat' (did you mean 'data'?)"),
    ("requires itself", with_resources("a:\n  type: drbd\n  resource: r0\n  requires: [a]\n"),
     "hafd.yaml:9: resources.a.requires: a cannot require itself"),
    ("requires twice", with_resources(
        "a: {type: drbd, resource: r0}\nb:\n  type: drbd\n  resource: r1\n  requires: [a, a]\n"),
     "hafd.yaml:10: resources.b.requires: 'a' is listed twice"),
    ("requires a string", with_resources(
        "a: {type: drbd, resource: r0}\nb:\n  type: drbd\n  resource: r1\n  requires: a\n"),
     "hafd.yaml:10: resources.b.requires: expected a list of resource names, got a string 'a' (write [a])"),
    ("requires a number", with_resources(
        "a: {type: drbd, resource: r0}\nb: {type: drbd, resource: r1, requires: [1]}\n"),
     "hafd.yaml:7: resources.b.requires[0]: expected a string, got an integer 1 "
     "(put it in quotes to make it a string: '1')"),
    ("cycle", with_resources(
        "a: {type: drbd, resource: r0, requires: [b]}\n"
        "b: {type: drbd, resource: r1, requires: [c]}\n"
        "c: {type: drbd, resource: r2, requires: [a]}\n"),
     "hafd.yaml:6: resources.a.requires: dependency cycle a -> b -> c -> a"),
    ("cycle found from its middle", with_resources(
        "x: {type: drbd, resource: r9, requires: [b]}\n"
        "a: {type: drbd, resource: r0, requires: [b]}\n"
        "b: {type: drbd, resource: r1, requires: [a]}\n"),
     "hafd.yaml:7: resources.a.requires: dependency cycle a -> b -> a"),
    ("monitor_interval zero", with_resources("a: {type: drbd, resource: r0, monitor_interval: 0}\n"),
     "hafd.yaml:6: resources.a.monitor_interval: must be greater than 0, got 0"),
    ("timeout negative", with_resources("a:\n  type: drbd\n  resource: r0\n  timeout: -5\n"),
     "hafd.yaml:9: resources.a.timeout: must be greater than 0, got -5"),
    ("failure_timeout zero", with_resources("a:\n  type: drbd\n  resource: r0\n  failure_timeout: 0\n"),
     "hafd.yaml:9: resources.a.failure_timeout: must be greater than 0, got 0"),
    ("migration_threshold negative", with_resources("a:\n  type: drbd\n  resource: r0\n  migration_threshold: -1\n"),
     "hafd.yaml:9: resources.a.migration_threshold: must be at least 0, got -1"),
    ("migration_threshold bool", with_resources("a:\n  type: drbd\n  resource: r0\n  migration_threshold: true\n"),
     "hafd.yaml:9: resources.a.migration_threshold: expected an integer, got a boolean true"),
    ("duplicate resource", with_resources("a: {type: drbd, resource: r0}\na: {type: drbd, resource: r1}\n"),
     "hafd.yaml:7: resources.a: duplicate key 'a' (first defined at line 6)"),
    ("duplicate resource key", with_resources("a:\n  type: drbd\n  resource: r0\n  resource: r1\n"),
     "hafd.yaml:9: resources.a.resource: duplicate key 'resource' (first defined at line 8)"),
    # -- per type
    ("drbd resource missing", with_resources("a: {type: drbd}\n"),
     "hafd.yaml:6: resources.a: missing required key 'resource'"),
    ("drbd force not bool", with_resources("a: {type: drbd, resource: r0, force: 'yes'}\n"),
     "hafd.yaml:6: resources.a.force: expected a boolean (true or false), got a string 'yes'"),
    ("filesystem device missing", with_resources("a:\n  type: filesystem\n  directory: /data\n"),
     "hafd.yaml:6: resources.a: missing required key 'device'"),
    ("filesystem directory relative", with_resources("a:\n  type: filesystem\n  device: /dev/x\n  directory: data\n"),
     "hafd.yaml:9: resources.a.directory: must be an absolute path (starting with /), got 'data'"),
    ("filesystem kill_holders", with_resources(
        "a: {type: filesystem, device: /dev/x, directory: /d, kill_holders: 0}\n"),
     "hafd.yaml:6: resources.a.kill_holders: expected a boolean (true or false), got an integer 0"),
    ("ipaddr no prefix", with_resources("a:\n  type: ipaddr\n  address: 10.10.101.1\n  interface: eth2\n"),
     "hafd.yaml:8: resources.a.address: must be an IPv4 address with /prefix (prefix 0-32), e.g. 10.10.101.1/24, "
     "got '10.10.101.1'"),
    ("ipaddr prefix 33", with_resources("a:\n  type: ipaddr\n  address: 10.10.101.1/33\n  interface: eth2\n"),
     "hafd.yaml:8: resources.a.address: must be an IPv4 address with /prefix (prefix 0-32), e.g. 10.10.101.1/24, "
     "got '10.10.101.1/33'"),
    ("ipaddr ipv6", with_resources("a:\n  type: ipaddr\n  address: '2001:db8::1/64'\n  interface: eth2\n"),
     "hafd.yaml:8: resources.a.address: must be an IPv4 address with /prefix (prefix 0-32), e.g. 10.10.101.1/24, "
     "got '2001:db8::1/64'"),
    ("ipaddr interface missing", with_resources("a:\n  type: ipaddr\n  address: 10.0.0.1/8\n"),
     "hafd.yaml:6: resources.a: missing required key 'interface'"),
    ("ipaddr interface long", with_resources(
        "a:\n  type: ipaddr\n  address: 10.0.0.1/8\n  interface: abcdefghijklmnop\n"),
     "hafd.yaml:9: resources.a.interface: 'abcdefghijklmnop' is not a network interface name "
     "(at most 15 characters, no '/' or spaces)"),
    ("ipaddr arp_count", with_resources("a: {type: ipaddr, address: 10.0.0.1/8, interface: e, arp_count: -1}\n"),
     "hafd.yaml:6: resources.a.arp_count: must be at least 0, got -1"),
    ("ipaddr arp_interval", with_resources("a: {type: ipaddr, address: 10.0.0.1/8, interface: e, arp_interval: 0}\n"),
     "hafd.yaml:6: resources.a.arp_interval: must be greater than 0, got 0"),
    ("service unit missing", with_resources("a:\n  type: service\n"),
     "hafd.yaml:6: resources.a: missing required key 'unit'"),
    ("service init", with_resources("a:\n  type: service\n  unit: x\n  init: upstart\n"),
     "hafd.yaml:9: resources.a.init: must be one of systemd | sysv, got 'upstart'"),
    ("process command missing", with_resources("a:\n  type: process\n"),
     "hafd.yaml:6: resources.a: missing required key 'command'"),
    ("process command shell", with_resources("a:\n  type: process\n  command: /usr/sbin/dhcpd -f\n"),
     "hafd.yaml:8: resources.a.command: must be an argv list, not a shell string "
     "(e.g. [\"/usr/local/sbin/fence-node\", \"{peer}\"])"),
    ("process command empty", with_resources("a:\n  type: process\n  command: []\n"),
     "hafd.yaml:8: resources.a.command: must not be empty: give the program and its arguments"),
    ("process command null item", with_resources("a:\n  type: process\n  command:\n    - /bin/x\n    -\n"),
     "hafd.yaml:10: resources.a.command[1]: expected a string, got null (an empty value)"),
    ("process ready two probes", with_resources(
        "a:\n  type: process\n  command: [/bin/x]\n  ready: {tcp_port: 67, file: /run/x}\n"),
     "hafd.yaml:9: resources.a.ready: needs exactly one of tcp_port, udp_port or file, got tcp_port and file"),
    ("process ready no probe", with_resources("a:\n  type: process\n  command: [/bin/x]\n  ready: {timeout: 5}\n"),
     "hafd.yaml:9: resources.a.ready: needs exactly one of tcp_port, udp_port or file, got none"),
    ("process ready block style", with_resources(
        "a:\n  type: process\n  command: [/bin/x]\n  ready:\n    timeout: 5\n"),
     "hafd.yaml:9: resources.a.ready: needs exactly one of tcp_port, udp_port or file, got none"),
    ("tiebreaker block style, ping missing", with_cluster("tiebreaker:\n  interval: 1\n"),
     "hafd.yaml:3: cluster.tiebreaker: missing required key 'ping'"),
    ("process ready port", with_resources("a:\n  type: process\n  command: [/bin/x]\n  ready:\n    udp_port: 0\n"),
     "hafd.yaml:10: resources.a.ready.udp_port: must be between 1 and 65535, got 0"),
    ("process ready file relative", with_resources("a:\n  type: process\n  command: [/bin/x]\n  ready: {file: x}\n"),
     "hafd.yaml:9: resources.a.ready.file: must be an absolute path (starting with /), got 'x'"),
    ("process ready timeout", with_resources(
        "a:\n  type: process\n  command: [/bin/x]\n  ready: {file: /x, timeout: 0}\n"),
     "hafd.yaml:9: resources.a.ready.timeout: must be greater than 0, got 0"),
    ("process stop_signal", with_resources("a:\n  type: process\n  command: [/bin/x]\n  stop_signal: TREM\n"),
     "hafd.yaml:9: resources.a.stop_signal: unknown signal 'TREM' (did you mean 'TERM'?); "
     "e.g. TERM, INT, HUP, QUIT, USR1"),
    ("process stop_signal number", with_resources("a:\n  type: process\n  command: [/bin/x]\n  stop_signal: 15\n"),
     "hafd.yaml:9: resources.a.stop_signal: expected a string, got an integer 15 "
     "(put it in quotes to make it a string: '15')"),
    ("command monitor missing", with_resources("a:\n  type: command\n  start: [/bin/s]\n  stop: [/bin/t]\n"),
     "hafd.yaml:6: resources.a: missing required key 'monitor'"),
    ("command start shell", with_resources(
        "a:\n  type: command\n  start: 'x start'\n  stop: [/bin/t]\n  monitor: [/bin/m]\n"),
     "hafd.yaml:8: resources.a.start: must be an argv list, not a shell string "
     "(e.g. [\"/usr/local/sbin/fence-node\", \"{peer}\"])"),
    # -- programs
    ("program relative", "cluster: {name: c}\n" + _NODES + "programs:\n  drbdadm: drbdadm\n",
     "hafd.yaml:6: programs.drbdadm: must be an absolute path (starting with /), got 'drbdadm'"),
    ("program unknown", "cluster: {name: c}\n" + _NODES + "programs:\n  sytemctl: /bin/systemctl\n",
     "hafd.yaml:6: programs.sytemctl: unknown key 'sytemctl' (did you mean 'systemctl'?); "
     "known keys: drbdadm, mount, ocf_root, ping, service, systemctl, umount"),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in REJECTIONS], ids=[n for n, _, _ in REJECTIONS])
def test_rejection_names_file_line_path_and_mistake(text: str, expected: str) -> None:
    assert expected in issues_of(text)


def test_every_mistake_is_reported_in_one_pass() -> None:
    text = with_resources(
        "a: {type: drbd}\n"
        "b: {type: service, unit: x, requires: [zz]}\n"
        "c: {type: ipaddr, address: 1.2.3.4, interface: e}\n"
    ).replace("name: c", "name: c\n  port: 0")
    found = issues_of(text)
    assert found == [
        "hafd.yaml:3: cluster.port: must be between 1 and 65535, got 0",
        "hafd.yaml:7: resources.a: missing required key 'resource'",
        "hafd.yaml:8: resources.b.requires: unknown resource 'zz'",
        "hafd.yaml:9: resources.c.address: must be an IPv4 address with /prefix (prefix 0-32), "
        "e.g. 10.10.101.1/24, got '1.2.3.4'",
    ]


def test_issue_and_error_text() -> None:
    issue = ConfigIssue("/etc/hafd/hafd.yaml", 23, "resources.dhcpd.requires", "unknown resource 'dat'")
    assert str(issue) == "/etc/hafd/hafd.yaml:23: resources.dhcpd.requires: unknown resource 'dat'"
    assert str(ConfigIssue("f.yaml", 0, "", "cannot read")) == "f.yaml: cannot read"
    err = ConfigError([issue, ConfigIssue("f", 1, "p", "m")])
    assert str(err) == f"{issue}\nf:1: p: m"


def test_path_is_used_as_given() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("cluster: {name: c}\n", "/srv/x/hafd.yaml")
    assert [str(i) for i in info.value.issues] == ["/srv/x/hafd.yaml:1: missing required key 'nodes'"]
    assert parse_config(with_nodes("a: {links: [192.0.2.1]}\n"), "conf/h.yaml").path == "conf/h.yaml"


# -- the shipped and design configs -----------------------------------------------


@pytest.mark.parametrize("path", [SHIPPED, DESIGN], ids=["shipped", "design"])
def test_reference_configs_load(path: Path) -> None:
    config = load_config(str(path), node="nodeone")
    assert config.local_node == "nodeone"
    assert [n.name for n in config.peers()] == ["nodetwo"]
    assert config.warnings == ()
    c = config.cluster
    assert (c.name, c.port, c.interval, c.deadtime, c.failback) == ("dhcp", 694, 0.025, 0.36, False)
    assert c.fencing is not None and c.fencing.command == ("/usr/local/sbin/fence-node", "{peer}")
    assert c.fencing.on_failure is OnFailure.RETRY and c.fencing.timeout == 30.0
    assert c.tiebreaker is not None and c.tiebreaker.ping == "10.10.101.254"
    assert config.nodes["nodeone"].priority == 100 and config.nodes["nodetwo"].links == ("10.10.100.2",)
    res = config.resources
    assert list(res) == ["drbd", "data", "vip", "dhcpd"]
    assert res["drbd"].params == DrbdParams(resource="r0")
    assert res["data"].params == FilesystemParams(device="/dev/drbd/by-res/r0", directory="/data", fstype="ext3")
    assert res["data"].requires == ("drbd",)
    assert res["vip"].params == IpaddrParams(address="10.10.101.1/24", interface="eth2")
    assert res["dhcpd"].params == ServiceParams(unit="isc-dhcp-server")
    assert res["dhcpd"].requires == ("data", "vip")
    dhcpd = res["dhcpd"]
    assert (dhcpd.monitor_interval, dhcpd.migration_threshold, dhcpd.failure_timeout) == (5, 3, 300)
    assert res["dhcpd"].line == 44 and res["drbd"].line == 31


def test_shipped_config_is_the_design_document() -> None:
    assert SHIPPED.read_text() == DESIGN.read_text()


def test_local_node_from_addresses() -> None:
    config = load_config(str(SHIPPED), local_addresses=["127.0.0.1", "10.10.100.2"])
    assert config.local_node == "nodetwo"
    assert load_config(str(SHIPPED)).local_node is None


def test_node_option_overrides_addresses() -> None:
    assert load_config(str(SHIPPED), node="nodeone", local_addresses=["10.10.100.2"]).local_node == "nodeone"


@pytest.mark.parametrize("kw, expected", [
    ({"node": "nodeon"}, "hafd.yaml:22: nodes: --node 'nodeon' is not a configured node (did you mean 'nodeone'?); "
                         "configured nodes: nodeone, nodetwo"),
    ({"local_addresses": ["127.0.0.1"]},
     "hafd.yaml:22: nodes: cannot determine the local node: none of the link addresses (10.10.100.1, 10.10.100.2) "
     "is configured on this host (use --node NAME)"),
    ({"local_addresses": ["10.10.100.1", "10.10.100.2", "nonsense"]},
     "hafd.yaml:22: nodes: cannot determine the local node: nodes nodeone, nodetwo all have a link address "
     "configured on this host (use --node NAME)"),
])
def test_local_node_errors(kw: dict[str, object], expected: str) -> None:
    assert issues_of(SHIPPED.read_text(), **kw) == [expected]


# -- defaults, accepted spellings -------------------------------------------------


def test_defaults_are_applied() -> None:
    config = parse_config(with_resources("p: {type: process, command: [/bin/x]}\n"))
    assert config.programs == Programs()
    c = config.cluster
    assert (c.key_file, c.port, c.interval, c.deadtime, c.state_dir) == (
        "/etc/hafd/authkey", 694, 0.025, 0.36, "/var/lib/hafd")
    assert c.fencing is None and c.tiebreaker is None and c.stop_resources_on_exit is False
    assert config.nodes["a"].priority == 0
    p = config.resources["p"]
    assert (p.requires, p.monitor_interval, p.timeout, p.migration_threshold, p.failure_timeout) == ((), 10, 20, 3, 300)
    assert p.params == ProcessParams(command=("/bin/x",), ready=None, stop_signal="TERM")
    assert p.line == 6


def test_empty_sections_and_single_node() -> None:
    config = parse_config("cluster: {name: c}\nnodes:\n  solo: {links: [127.0.0.1]}\nresources:\nprograms:\n",
                          local_addresses=["127.0.0.1"])
    assert config.resources == {} and config.programs == Programs() and config.local_node == "solo"
    assert config.warnings == ()  # one node: nobody to split from


def test_typed_values() -> None:
    config = parse_config(with_resources(
        """\
        d: {type: process, command: [/usr/sbin/dhcpd, -4, -f, 1.5, 'on'], stop_signal: sighup,
            ready: {udp_port: 67, timeout: 3}}
        c: {type: command, start: [/bin/s], stop: [/bin/t], monitor: [/bin/m, on]}
        i: {type: ipaddr, address: 10.10.101.1/24, interface: eth2, arp_count: 0, arp_interval: 1}
        f: {type: filesystem, device: LABEL=data, directory: /data, fstype: ~, options: '', kill_holders: false}
        s: {type: service, unit: isc-dhcp-server, init: sysv, timeout: 1, requires: [f, i]}
        """
    ).replace("name: c", "name: c\n  interval: 1\n  deadtime: 10.5\n  port: 0x2b6\n  failback: yes"))
    d = config.resources["d"].params
    assert d == ProcessParams(command=("/usr/sbin/dhcpd", "-4", "-f", "1.5", "on"), stop_signal="HUP",
                              ready=ReadyCheck(udp_port=67, timeout=3.0))
    assert config.resources["c"].params == CommandParams(start=("/bin/s",), stop=("/bin/t",), monitor=("/bin/m", "on"))
    assert config.resources["i"].params == IpaddrParams("10.10.101.1/24", "eth2", arp_count=0, arp_interval=1.0)
    assert config.resources["f"].params == FilesystemParams("LABEL=data", "/data", None, "", False)
    assert config.resources["s"].params == ServiceParams("isc-dhcp-server", "sysv")
    assert config.resources["s"].requires == ("f", "i")
    c = config.cluster
    assert (c.interval, c.deadtime, c.port, c.failback) == (1.0, 10.5, 694, True)
    assert isinstance(c.interval, float)


def test_addresses_are_canonical() -> None:
    config = parse_config(with_nodes("a: {links: ['2001:DB8:0:0::1', 192.0.2.1]}\n"),
                          local_addresses=["2001:db8::1"])
    assert config.nodes["a"].links == ("2001:db8::1", "192.0.2.1")
    assert config.local_node == "a"


@pytest.mark.parametrize("spelling, name", [("TERM", "TERM"), ("SIGINT", "INT"), ("usr1", "USR1"), ("SigQuit", "QUIT")])
def test_stop_signal_spellings(spelling: str, name: str) -> None:
    config = parse_config(with_resources(f"p: {{type: process, command: [/bin/x], stop_signal: {spelling}}}\n"))
    assert config.resources["p"].params.stop_signal == name  # type: ignore[union-attr]


def test_fencing_halt() -> None:
    config = parse_config(with_cluster("fencing: {command: [/sbin/f, '{peer}'], on_failure: halt, timeout: 5}\n"))
    assert config.cluster.fencing is not None
    assert config.cluster.fencing.on_failure is OnFailure.HALT and config.cluster.fencing.timeout == 5.0


# -- warnings ---------------------------------------------------------------------


def test_warns_without_fencing_or_tiebreaker() -> None:
    config = parse_config(with_cluster(""))
    assert config.warnings == (
        "hafd.yaml:1: cluster: no fencing and no tiebreaker: a node that only loses the HA link may serve while its "
        "peer also serves; configure cluster.fencing or cluster.tiebreaker",
    )
    assert parse_config(with_cluster("tiebreaker: {ping: 192.0.2.9}\n")).warnings == ()
    assert parse_config(with_cluster("fencing: {command: [/sbin/f]}\n")).warnings == ()


@pytest.mark.parametrize("interval, deadtime, beats", [(0.025, 0.35, 14), (0.05, 0.45, 9), (1, 3, 3), (0.02, 0.3, 15)])
def test_warns_on_deadtime_multiple_of_interval(interval: float, deadtime: float, beats: int) -> None:
    extra = f"interval: {interval}\ndeadtime: {deadtime}\ntiebreaker: {{ping: 192.0.2.9}}\n"
    config = parse_config(with_cluster(extra))
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"hafd.yaml:4: cluster.deadtime: deadtime {deadtime:g} is an exact "
                                         f"multiple of interval {interval:g} ({beats} heartbeats)")


def test_no_multiple_warning_off_the_boundary() -> None:
    config = parse_config(with_cluster("interval: 0.025\ndeadtime: 0.36\ntiebreaker: {ping: 192.0.2.9}\n"))
    assert config.warnings == ()


# -- files ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [str(i) for i in info.value.issues] == [f"{path}: cannot read the config file: No such file or directory"]


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file: Is a directory"):
        load_config(str(tmp_path))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_bytes(b"cluster:\n  name: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert [str(i) for i in info.value.issues] == [f"{path}:2: not valid UTF-8 text (byte 17)"]


def test_control_character() -> None:
    assert issues_of("cluster:\n  name: a\x07b\n") == [
        "hafd.yaml:2: invalid YAML: special characters are not allowed"]


def test_recursive_alias_is_an_error_not_a_hang() -> None:
    found = issues_of("cluster: &c {name: c, fencing: {command: *c}}\n" + _NODES)
    assert found == ["hafd.yaml:1: cluster.fencing.command: expected an argv list of strings, got a mapping"]


def test_deep_nesting() -> None:
    assert issues_of("cluster: " + "[" * 5000 + "]" * 5000 + "\n") == ["hafd.yaml: invalid YAML: nested too deeply"]


def test_resource_types_table_matches_params() -> None:
    import dataclasses

    for name, kind in RESOURCE_TYPES.items():
        fields = {f.name for f in dataclasses.fields(kind.params)}
        assert set(kind.keys) == fields, name
        required = {
            f.name
            for f in dataclasses.fields(kind.params)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        assert {k for k, spec in kind.keys.items() if spec.required} == required, name


# -- fuzz -------------------------------------------------------------------------

_DESIGN_TEXT = SHIPPED.read_text()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_garbage_only_raises_config_error(text: str) -> None:
    try:
        assert isinstance(parse_config(text), Config)
    except ConfigError as exc:
        assert exc.issues and all(isinstance(i, ConfigIssue) for i in exc.issues)


_TOKENS = st.sampled_from(["!!bool maybe", "!!int ''", "!!float x", "!!null", "&a ", "*a", "<<: ", "[", "]", "{",
                           "}", ": ", "- ", "\n", "  ", "~", "'", '"', "::1", "0x", ".inf", "#", "!x ", "? "])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_DESIGN_TEXT)), st.integers(0, 12), st.text(max_size=6) | _TOKENS),
                max_size=4))
def test_mutated_design_only_raises_config_error(edits: list[tuple[int, int, str]]) -> None:
    text = _DESIGN_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    try:
        assert isinstance(parse_config(text, node="nodeone"), Config)
    except ConfigError as exc:
        assert exc.issues and all(isinstance(i, ConfigIssue) and i.line >= 0 for i in exc.issues)


def test_ocf_resources_take_an_agent_and_string_params() -> None:
    from hafd.core.config import OcfParams

    cfg = parse_config(
        "cluster: {name: c}\nnodes:\n  a: {links: [192.0.2.1]}\nresources:\n  ip:\n    type: ocf\n"
        "    agent: ocf:heartbeat:IPaddr2\n    params: {ip: 10.10.101.1, cidr_netmask: 24, lvs_support: false}\n"
    )
    p = cfg.resources["ip"].params
    assert isinstance(p, OcfParams)
    assert (p.agent, p.provider, p.kind) == ("heartbeat:IPaddr2", "heartbeat", "IPaddr2")
    assert dict(p.params) == {"ip": "10.10.101.1", "cidr_netmask": "24", "lvs_support": "false"}
    assert cfg.resources["ip"].timeout_set is False


@pytest.mark.parametrize(
    "body, message",
    [
        ("    agent: IPaddr2\n", "resources.ip.agent: 'IPaddr2' is not an OCF agent name: use PROVIDER:TYPE"),
        ("    agent: heartbeat:IPaddr2\n    params: {ip: [1, 2]}\n", "resources.ip.params.ip: expected a scalar value"),
        ("    agent: heartbeat:IPaddr2\n    params: {'bad-name': x}\n", "resources.ip.params.bad-name: parameter names"),
    ],
)
def test_ocf_rejections(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config("cluster: {name: c}\nnodes:\n  a: {links: [192.0.2.1]}\nresources:\n  ip:\n    type: ocf\n" + body)
    assert message in str(e.value)
