"""hafctl import-crm: crm shell commands + corosync.conf -> hafd.yaml that validates and means the same."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hafd import cli
from hafd.core.config import Config
from hafd.core.configload import load_config, parse_config
from hafd.core.graph import Graph
from hafd.migrate import ImportResult, import_crm
from hafd.migrate.corosync import parse_corosync
from hafd.migrate.crm import Ref, logical_lines, parse_crm
from hafd.migrate.emit import scalar

REF = Path("/work/shared/reference")
SEED_CRM = REF / "seed-crm-commands.txt"
SEED_COROSYNC = REF / "seed-corosync.conf"
SHIPPED = Path(__file__).resolve().parent.parent / "config" / "hafd.yaml"

COROSYNC = """\
totem {
    cluster_name: test
    token: 1000
}
nodelist {
    node {
        name: alpha
        nodeid: 1
        ring0_addr: 10.0.0.1
        ring1_addr: 10.0.1.1
    }
    node {
        name: beta
        nodeid: 2
        ring0_addr: 10.0.0.2
        ring1_addr: 10.0.1.2
    }
}
"""


def run(crm: str, corosync: str | None = COROSYNC) -> tuple[ImportResult, Config]:
    result = import_crm(crm, "in.crm", corosync, "corosync.conf")
    return result, parse_config(result.yaml_text, "out.yaml")


def lost(result: ImportResult) -> list[str]:
    return [str(r) for r in result.lost]


def notes(result: ImportResult) -> list[str]:
    return [str(r) for r in result.reports if not r.lost]


def waves(cfg: Config, rename: dict[str, str] | None = None) -> list[set[str]]:
    graph = Graph.build({n: r.requires for n, r in cfg.resources.items()})
    rename = rename or {}
    return [{rename.get(n, n) for n in wave} for wave in graph.start_plan()]


# -- the seed, end to end ---------------------------------------------------------------

SEED_TO_SHIPPED = {"testnet": "vip", "drbd-r0": "drbd", "fs_data": "data", "dhcp": "dhcpd"}


@pytest.fixture(scope="module")
def seed() -> tuple[ImportResult, Config]:
    result = import_crm(SEED_CRM.read_text(), SEED_CRM.name, SEED_COROSYNC.read_text(), SEED_COROSYNC.name)
    return result, parse_config(result.yaml_text, "imported.yaml")


def test_seed_validates_and_has_the_shipped_nodes_and_links(seed: tuple[ImportResult, Config]) -> None:
    _, cfg = seed
    shipped = load_config(str(SHIPPED))
    assert cfg.cluster.name == shipped.cluster.name == "dhcp"
    assert {n: node.links for n, node in cfg.nodes.items()} == {n: node.links for n, node in shipped.nodes.items()}
    # same preference: nodeone first
    assert [n for n, _ in sorted(cfg.nodes.items(), key=lambda kv: -kv[1].priority)] == ["nodeone", "nodetwo"]
    assert cfg.cluster.failback is shipped.cluster.failback is False


def test_seed_resources_match_the_shipped_config(seed: tuple[ImportResult, Config]) -> None:
    _, cfg = seed
    shipped = load_config(str(SHIPPED))
    assert set(cfg.resources) == set(SEED_TO_SHIPPED)
    for crm_name, name in SEED_TO_SHIPPED.items():
        if crm_name == "dhcp":
            continue
        assert cfg.resources[crm_name].type == shipped.resources[name].type
        assert cfg.resources[crm_name].params == shipped.resources[name].params
    dhcp = cfg.resources["dhcp"]
    assert dhcp.type == "ocf" and dhcp.params is not None
    assert dhcp.params.agent == "dieploegers:dhcp"  # type: ignore[union-attr]
    assert shipped.resources["dhcpd"].type == "service"


def test_seed_start_and_stop_plans_match_the_shipped_config(seed: tuple[ImportResult, Config]) -> None:
    _, cfg = seed
    shipped = load_config(str(SHIPPED))
    assert waves(cfg, SEED_TO_SHIPPED) == waves(shipped) == [{"drbd", "vip"}, {"data"}, {"dhcpd"}]
    g = Graph.build({n: r.requires for n, r in cfg.resources.items()})
    gs = Graph.build({n: r.requires for n, r in shipped.resources.items()})
    assert [{SEED_TO_SHIPPED[n] for n in w} for w in g.stop_plan()] == [set(w) for w in gs.stop_plan()]
    # every resource runs on the active node: the set the active node runs is all of them, in both
    assert {SEED_TO_SHIPPED[n] for w in g.start_plan() for n in w} == set(shipped.resources)


def test_seed_reports_exactly_what_it_cannot_translate(seed: tuple[ImportResult, Config]) -> None:
    result, _ = seed
    assert [(r.file, r.line) for r in result.lost] == [("seed-crm-commands.txt", 6), ("seed-crm-commands.txt", 8)]
    assert "role=Slave" in result.lost[0].message
    assert "'drbd' is not defined" in result.lost[1].message and "drbd-r0-master" in result.lost[1].message
    assert {r.line for r in result.reports if not r.lost} == {3, 4}  # stonith-enabled, no-quorum-policy
    # ... and every report is also a comment in the output
    for r in result.reports:
        assert f"{r.file}:{r.line}:" in result.yaml_text


def test_seed_comments_explain_what_hafd_does_instead(seed: tuple[ImportResult, Config]) -> None:
    text = seed[0].yaml_text
    assert "stonith-enabled=false" in text and "cluster.fencing runs a command" in text
    assert "no-quorum-policy=ignore" in text and "startup_wait" in text and "tiebreaker" in text
    assert "token was 3000 ms" in text
    assert "nodeid order" in text
    assert "type: service" in text and "isc-dhcp-server" in text  # the suggestion for the custom agent


# -- mapping rules ------------------------------------------------------------------------


def test_ipaddr2_maps_to_ipaddr_with_a_dotted_netmask_and_arp_settings() -> None:
    result, cfg = run("primitive vip ocf:heartbeat:IPaddr2 params ip=192.168.1.5 cidr_netmask=255.255.255.0 "
                      "nic=eth1 arp_count=5 arp_interval=250\n")
    r = cfg.resources["vip"]
    assert r.type == "ipaddr"
    assert (r.params.address, r.params.interface) == ("192.168.1.5/24", "eth1")  # type: ignore[union-attr]
    assert (r.params.arp_count, r.params.arp_interval) == (5, 0.25)  # type: ignore[union-attr]
    assert not result.reports


def test_ipaddr2_without_nic_stays_an_ocf_agent_and_says_why() -> None:
    result, cfg = run("primitive vip IPaddr2 params ip=192.168.1.5 cidr_netmask=24\n")
    r = cfg.resources["vip"]
    assert r.type == "ocf"
    assert r.params.agent == "heartbeat:IPaddr2"  # type: ignore[union-attr]
    assert dict(r.params.params) == {"ip": "192.168.1.5", "cidr_netmask": "24"}  # type: ignore[union-attr]
    assert not result.lost and any("nic" in n and "in.crm:1" in n for n in notes(result))


def test_filesystem_maps_and_unknown_parameters_keep_the_ocf_agent() -> None:
    result, cfg = run('primitive fs Filesystem params device=/dev/sdb1 directory=/srv fstype=xfs '
                      'options="noatime,nodiratime" force_unmount=false\n'
                      "primitive fs2 ocf:heartbeat:Filesystem params device=/dev/sdc1 directory=/x run_fsck=force\n")
    p = cfg.resources["fs"].params
    assert cfg.resources["fs"].type == "filesystem"
    assert (p.device, p.directory, p.fstype, p.options, p.kill_holders) == (  # type: ignore[union-attr]
        "/dev/sdb1", "/srv", "xfs", "noatime,nodiratime", False)
    assert cfg.resources["fs2"].type == "ocf"
    assert cfg.resources["fs2"].params.params["run_fsck"] == "force"  # type: ignore[union-attr]
    assert any("run_fsck" in n for n in notes(result))


def test_service_classes() -> None:
    result, cfg = run("primitive a lsb:isc-dhcp-server\nprimitive b systemd:nginx\nprimitive c service:cron\n")
    assert [(r.type, r.params.unit, r.params.init) for r in cfg.resources.values()] == [  # type: ignore[union-attr]
        ("service", "isc-dhcp-server", "sysv"), ("service", "nginx", "systemd"), ("service", "cron", "systemd")]
    assert not result.reports


def test_other_agents_stay_ocf_with_their_params() -> None:
    _, cfg = run('primitive web ocf:heartbeat:apache params configfile="/etc/apache2/apache2.conf" '
                 "statusurl=http://localhost/server-status\n")
    r = cfg.resources["web"]
    assert r.type == "ocf" and r.params.agent == "heartbeat:apache"  # type: ignore[union-attr]
    assert dict(r.params.params) == {"configfile": "/etc/apache2/apache2.conf",  # type: ignore[union-attr]
                                     "statusurl": "http://localhost/server-status"}


def test_drbd_in_ms_maps_to_drbd_and_unusual_ms_meta_is_reported() -> None:
    result, cfg = run("primitive d ocf:linbit:drbd params drbd_resource=r1\n"
                      "ms ms-d d meta master-max=2 clone-max=2 notify=true\n")
    assert cfg.resources["d"].type == "drbd" and cfg.resources["d"].params.resource == "r1"  # type: ignore[union-attr]
    assert [r.line for r in result.lost] == [2] and "master-max=2" in result.lost[0].message


def test_stonith_clone_and_ms_of_other_agents_are_reported() -> None:
    result, cfg = run("primitive fence stonith:fence_ipmilan params ip=10.0.9.1\n"
                      "primitive ping ocf:pacemaker:ping params host_list=10.0.0.254\n"
                      "clone ping-clone ping\n"
                      "primitive st ocf:heartbeat:Stateful\n"
                      "ms ms-st st\n"
                      "order o inf: fence ping-clone\n")
    assert "fence" not in cfg.resources and set(cfg.resources) == {"ping", "st"}
    by_line = {r.line: r.message for r in result.lost}
    assert "fencing device" in by_line[1] and "fence_ipmilan" in by_line[1]
    assert "clone ping-clone" in by_line[3]
    assert "promotion of st" in by_line[4]
    assert "did not become hafd resources" in by_line[6]


def test_operations_give_shortest_monitor_and_largest_timeout() -> None:
    result, cfg = run("primitive a systemd:x op monitor interval=20s timeout=10s op monitor interval=1min "
                      "op start timeout=90s op stop timeout=2min on-fail=block\n"
                      "primitive b systemd:y\n"
                      "op_defaults timeout=45s\n")
    a, b = cfg.resources["a"], cfg.resources["b"]
    assert (a.monitor_interval, a.timeout, a.timeout_set) == (20, 120, True)
    assert b.timeout == 45
    assert [r.line for r in result.lost] == [1] and "on-fail=block" in result.lost[0].message


def test_meta_attributes() -> None:
    result, cfg = run("primitive a systemd:x meta migration-threshold=3 failure-timeout=5min\n"
                      "primitive b systemd:y meta migration-threshold=INFINITY target-role=Stopped\n"
                      "primitive c systemd:z\n"
                      "rsc_defaults rsc-options: failure-timeout=60s migration-threshold=1\n")
    a, b, c = (cfg.resources[n] for n in "abc")
    assert (a.migration_threshold, a.failure_timeout) == (2, 300)
    assert (b.migration_threshold, b.failure_timeout) == (1000000, 60)
    assert (c.migration_threshold, c.failure_timeout) == (0, 60)
    assert [r.line for r in result.lost] == [2] and "target-role=Stopped" in result.lost[0].message
    assert "Pacemaker moved it on failure 3, hafd moves it after this many local restarts" in result.yaml_text  # the N-1 is explained


def test_location_becomes_priority_and_failback_follows_stickiness() -> None:
    crm = "primitive a systemd:x\nlocation pref a 100: beta\n"
    _, cfg = run(crm)
    assert (cfg.nodes["alpha"].priority, cfg.nodes["beta"].priority) == (0, 100)
    assert cfg.cluster.failback is True  # Pacemaker with stickiness 0 moved back to beta
    _, cfg = run(crm + "rsc_defaults resource-stickiness=200\n")
    assert cfg.cluster.failback is False
    _, cfg = run(crm + "property default-resource-stickiness=50\n")
    assert cfg.cluster.failback is True


def test_locations_hafd_cannot_express_are_reported() -> None:
    result, cfg = run("primitive a systemd:x\n"
                      "location ban a -inf: alpha\n"
                      "location pin a inf: beta\n"
                      "location r a rule 100: #uname eq alpha\n"
                      "location typo a 50: gamma\n")
    assert [r.line for r in result.lost] == [2, 3, 4, 5]
    assert cfg.nodes["beta"].priority == 1000000


def test_no_location_gives_nodeid_order() -> None:
    swapped = COROSYNC.replace("nodeid: 1", "nodeid: 9")
    _, cfg = run("primitive a systemd:x\n", swapped)
    assert (cfg.nodes["beta"].priority, cfg.nodes["alpha"].priority) == (100, 90)
    assert list(cfg.nodes) == ["beta", "alpha"]


# -- constraints ----------------------------------------------------------------------------


def test_group_chains_its_members_and_stands_for_first_or_last() -> None:
    _, cfg = run("primitive a systemd:a\nprimitive b systemd:b\nprimitive c systemd:c\nprimitive d systemd:d\n"
                 "primitive e systemd:e\n"
                 "group g a b c\n"
                 "order d_after_g inf: g d\n"
                 "colocation g_with_e inf: e g\n")
    assert cfg.resources["b"].requires == ("a",) and cfg.resources["c"].requires == ("b",)
    assert cfg.resources["d"].requires == ("c",)  # after the whole group
    assert cfg.resources["a"].requires == ("e",)  # the group's first member
    assert waves(cfg) == [{"e"}, {"a"}, {"b"}, {"c"}, {"d"}]


def test_colocation_chains_and_sets_and_roles() -> None:
    _, cfg = run("primitive d ocf:linbit:drbd params drbd_resource=r0\nms ms-d d\n"
                 "primitive a systemd:a\nprimitive b systemd:b\nprimitive c systemd:c\nprimitive e systemd:e\n"
                 "colocation chain inf: ms-d:Master a b\n"
                 "order sets inf: b ( c e ) a\n")
    assert cfg.resources["a"].requires == ("c", "e", "d")  # order first; the colocation's a-after-b is refused
    assert cfg.resources["b"].requires == () and cfg.resources["d"].requires == ()
    assert cfg.resources["c"].requires == ("b",) and cfg.resources["e"].requires == ("b",)


def test_order_direction_wins_over_a_reversed_colocation() -> None:
    result, cfg = run("primitive a systemd:a\nprimitive b systemd:b\n"
                      "colocation b_with_a inf: b a\n"
                      "order a_then_b inf: a b\n")
    assert cfg.resources["b"].requires == ("a",) and cfg.resources["a"].requires == ()
    assert any("in.crm:3" in n and "direction is kept" in n for n in notes(result))


def test_constraints_hafd_cannot_express() -> None:
    result, cfg = run("primitive a systemd:a\nprimitive b systemd:b\n"
                      "colocation apart -inf: a b\n"
                      "order o Optional: a b symmetrical=false\n"
                      "colocation ghost inf: a nosuch\n")
    by_line = {r.line: r.message for r in result.lost}
    assert set(by_line) == {3, 4, 5}
    assert "keep resources apart" in by_line[3] and "symmetrical=false" in by_line[4] and "'nosuch'" in by_line[5]
    assert any("in.crm:4" in n and "advisory" in n for n in notes(result))
    assert cfg.resources["b"].requires == ("a",)


# -- the crm configure show form, tokenising ---------------------------------------------------

SHOW = r"""node 1: alpha \
	attributes standby=off
node 2: beta
primitive testnet IPaddr2 \
	params ip=10.10.101.1 cidr_netmask=24 nic=eth2 \
	op monitor interval=10s timeout=20s
primitive drbd-r0 ocf:linbit:drbd \
	params drbd_resource=r0 \
	op monitor interval=29s role=Master
# a comment in the middle
primitive fs_data Filesystem \
	params device="/dev/drbd/by-res/r0" directory="/data" fstype=ext3
ms drbd-r0-master drbd-r0 \
	meta master-max=1 master-node-max=1 clone-max=2 clone-node-max=1 notify=true
colocation fs_on_drbd inf: fs_data drbd-r0-master:Master
order fs_after_drbd Mandatory: drbd-r0-master:promote fs_data:start
property cib-bootstrap-options: \
	have-watchdog=false \
	dc-version="2.1.5-a3f44794f94" \
	cluster-infrastructure=corosync \
	stonith-enabled=false
"""


def test_show_form_with_continuations() -> None:
    result, cfg = run(SHOW)
    assert not result.lost, lost(result)
    assert cfg.resources["testnet"].type == "ipaddr" and cfg.resources["testnet"].monitor_interval == 10
    assert cfg.resources["fs_data"].requires == ("drbd-r0",)
    crm = parse_crm(SHOW, "show")
    assert crm.primitives["fs_data"].line == 11 and crm.wrappers["drbd-r0-master"].line == 13
    assert [n.name for n in crm.nodes] == ["alpha", "beta"]
    assert {s.name for s in crm.settings} == {"have-watchdog", "dc-version", "cluster-infrastructure",
                                             "stonith-enabled"}


def test_one_command_per_line_and_show_form_agree() -> None:
    commands = "\n".join([
        "crm configure primitive testnet ocf:heartbeat:IPaddr2 params ip=10.10.101.1 cidr_netmask=24 nic=eth2 "
        "op monitor interval=10s timeout=20s",
        "crm configure primitive drbd-r0 ocf:linbit:drbd params drbd_resource=r0 op monitor interval=29s role=Master",
        'sudo crm configure primitive fs_data ocf:heartbeat:Filesystem params device="/dev/drbd/by-res/r0" '
        'directory="/data" fstype="ext3"',
        "crm configure ms drbd-r0-master drbd-r0 meta master-max=1 master-node-max=1 clone-max=2 notify=true",
        "crm configure colocation fs_on_drbd inf: fs_data drbd-r0-master:Master",
        "crm -F configure order fs_after_drbd Mandatory: drbd-r0-master:promote fs_data:start",
        "crm configure commit",
    ])
    _, a = run(commands)
    _, b = run(SHOW)
    strip = lambda cfg: {n: (r.type, r.params, r.requires, r.monitor_interval, r.timeout)  # noqa: E731
                         for n, r in cfg.resources.items()}
    assert strip(a) == strip(b)


def test_quoting_and_continuations() -> None:
    text = ('crm configure primitive x ocf:acme:thing params msg="hello world" q=\'it is "quoted"\' \\\n'
            "   empty=\"\" esc=a\\ b yes=yes time=1:20 oct=0755\n")
    assert logical_lines(text)[0][0] == 1 and len(logical_lines(text)) == 1
    result, cfg = run(text)
    assert dict(cfg.resources["x"].params.params) == {  # type: ignore[union-attr]
        "msg": "hello world", "q": 'it is "quoted"', "empty": "", "esc": "a b", "yes": "yes", "time": "1:20",
        "oct": "0755"}
    assert yaml.safe_load(result.yaml_text)["resources"]["x"]["params"]["time"] == "1:20"


@pytest.mark.parametrize("value", ["yes", "no", "on", "null", "~", "1:20", "0755", "12", "1e3", "a: b", "#x", "",
                                   "- x", "[x]", "{x}", "a,b", "x'y", 'x"y', "tab\there", "ünï", "@at", "*ref"])
def test_scalars_read_back_as_written(value: str) -> None:
    assert yaml.safe_load(f"k: {scalar(value)}") == {"k": value}
    assert yaml.safe_load(f"k: [{scalar(value, flow=True)}]") == {"k": [value]}


def test_unknown_and_broken_commands_are_reported_with_their_lines() -> None:
    text = ("crm configure primitive a systemd:a\n"
            "crm resource cleanup a\n"
            "\n"
            "crm configure rsc_ticket t ticketA: a\n"
            "frobnicate now\n"
            'crm configure primitive b systemd:b params x="unterminated\n'
            "crm configure primitive c @tmpl\n"
            "crm configure primitive a systemd:again\n")
    result, cfg = run(text)
    assert set(cfg.resources) == {"a"}
    by_line = {r.line: r.message for r in result.lost}
    assert set(by_line) == {2, 4, 5, 6, 7, 8}
    assert "not a configuration command" in by_line[2]
    assert "rsc_ticket" in by_line[4] and "frobnicate" in by_line[5]
    assert "quotes" in by_line[6] and "template" in by_line[7] and "already defined" in by_line[8]
    assert all(str(r).startswith(f"in.crm:{r.line}: cannot translate: ") for r in result.lost)


def test_constraint_parse_keeps_roles_and_actions() -> None:
    crm = parse_crm("crm configure order o inf: ms:promote fs:start\n")
    assert crm.constraints[0].chain == ((Ref("ms", "promote"),), (Ref("fs", "start"),))


# -- corosync.conf ------------------------------------------------------------------------------


def test_corosync_nodelist_with_ring1_gives_two_links() -> None:
    cs = parse_corosync(COROSYNC)
    assert [(n.name, n.nodeid, n.addrs) for n in cs.nodes] == [
        ("alpha", 1, ("10.0.0.1", "10.0.1.1")), ("beta", 2, ("10.0.0.2", "10.0.1.2"))]
    assert cs.cluster_name == "test" and cs.token_ms == 1000 and not cs.problems
    _, cfg = run("primitive a systemd:x\n")
    assert cfg.nodes["alpha"].links == ("10.0.0.1", "10.0.1.1")
    assert cfg.cluster.name == "test"


COROSYNC1 = """\
totem {
    version: 2
    secauth: off
    interface {
        ringnumber: 0
        bindnetaddr: 10.10.100.0
        mcastaddr: 226.94.1.1
        mcastport: 5405
    }
}
"""


def test_corosync1_form_is_reported_and_output_still_validates() -> None:
    cs = parse_corosync(COROSYNC1, "old.conf")
    assert not cs.nodes
    assert [r.line for r in cs.problems] == [4, 0]
    assert "bindnetaddr 10.10.100.0" in cs.problems[0].message and "Corosync 1" in cs.problems[0].message
    result, cfg = run("node nodeone\nnode nodetwo\nprimitive a systemd:x\n", COROSYNC1)
    assert list(cfg.nodes) == ["nodeone", "nodetwo"]
    assert "FIXME" in result.yaml_text
    assert any("placeholder" in m for m in lost(result))
    assert any(r.file == "corosync.conf" and r.line == 4 for r in result.lost)


def test_without_any_node_names_placeholders_are_reported() -> None:
    for corosync in (COROSYNC1, None):
        result, cfg = run("primitive a systemd:x\n", corosync)
        assert list(cfg.nodes) == ["node1", "node2"]
        assert cfg.nodes["node1"].links == ("192.0.2.1",)
        messages = lost(result)
        assert any("no node names" in m for m in messages) and any("no cluster name" in m for m in messages)
        assert "FIXME: placeholder node name" in result.yaml_text


def test_corosync_nameless_nodes_hostnames_and_syntax_errors() -> None:
    text = ("nodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 10.0.0.1\n  }\n"
            "  node {\n    nodeid: 2\n    ring0_addr: beta-ha\n  }\n}\n}\nbogus line\n")
    cs = parse_corosync(text)
    assert [r.line for r in cs.problems] == [11, 12]
    result, cfg = run("node 1: alpha\nprimitive a systemd:x\n", text)
    assert list(cfg.nodes) == ["alpha", "node2"]
    messages = lost(result)
    assert any("beta-ha" in m and "host name" in m for m in messages)
    assert any("named node2" in m for m in messages)
    assert not any("named alpha" in m for m in messages)  # from crm's node list: a note only


# -- the command line ------------------------------------------------------------------------------


@pytest.fixture
def seed_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(SEED_CRM, tmp_path / SEED_CRM.name)
    shutil.copy(SEED_COROSYNC, tmp_path / SEED_COROSYNC.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_seed_exit_0_yaml_on_stdout_reports_on_stderr(seed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-crm", SEED_CRM.name, "--corosync", SEED_COROSYNC.name]) == 0
    out, err = capsys.readouterr()
    parse_config(out)
    assert "seed-crm-commands.txt:8: cannot translate: colocation drbd_on_net" in err
    assert "seed-crm-commands.txt:6: cannot translate:" in err
    assert "2 item(s) not translated" in err


def test_cli_strict_exits_1_when_something_is_not_translated(seed_dir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-crm", "--strict", SEED_CRM.name, "--corosync", SEED_COROSYNC.name]) == 1
    clean = seed_dir / "clean.crm"
    clean.write_text("crm configure property stonith-enabled=false\n"
                     "crm configure primitive vip ocf:heartbeat:IPaddr2 params ip=10.10.101.1 cidr_netmask=24 "
                     "nic=eth2\n")
    assert cli.main(["import-crm", "--strict", str(clean), "--corosync", SEED_COROSYNC.name]) == 0
    out, err = capsys.readouterr()
    assert "clean.crm:1: note: stonith-enabled=false" in err


def test_cli_unreadable_inputs_exit_1(seed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-crm", "missing.crm", "--corosync", SEED_COROSYNC.name]) == 1
    assert "cannot read missing.crm" in capsys.readouterr().err
    assert cli.main(["import-crm", SEED_CRM.name, "--corosync", "missing.conf"]) == 1
    assert "cannot read missing.conf" in capsys.readouterr().err


# -- any input: no crash, and the output always validates ------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WORDS = ["primitive", "ms", "clone", "group", "colocation", "order", "location", "node", "property", "rsc_defaults",
         "op_defaults", "crm", "configure", "inf:", "-inf:", "100:", "Optional:", "a", "b", "c", "a:Master",
         "b:start", "c:promote", "ocf:heartbeat:IPaddr2", "IPaddr2", "Filesystem", "ocf:linbit:drbd", "lsb:x",
         "systemd:", "ocf:a:b:c", "stonith:fence_x", "odd:thing", "params", "meta", "op", "monitor", "start",
         "interval=10s", "interval=0", "timeout=0", "timeout=5min", "role=Slave", "ip=10.0.0.1", "ip=fe80::1",
         "nic=eth0", "nic=averyveryverylongname0", "cidr_netmask=24", "cidr_netmask=255.0.0.0", "device=/dev/x",
         "directory=/d", "directory=rel", "drbd_resource=", "drbd_resource=r0", "migration-threshold=0",
         "migration-threshold=x", "failure-timeout=0", "resource-stickiness=INFINITY", "target-role=Stopped",
         "alpha", "beta", "gamma", "(", ")", "[", "]", "rule", "#uname", "eq", "1:", "\\\n", "\n", "\n", "'",
         '"', "x=\"y z\"", "stonith-enabled=false", "no-quorum-policy=stop", "bad id!", "$id=x", "{", "}"]


COMMAND = st.tuples(st.sampled_from(["primitive a", "primitive b", "primitive c", "primitive 'bad id!'", "ms m a",
                                      "clone k b", "group g", "colocation x inf:", "order o", "location l a",
                                      "node", "property", "rsc_defaults", "crm configure primitive c", ""]),
                    st.lists(st.sampled_from(WORDS), max_size=12)).map(lambda t: " ".join([t[0], *t[1]]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(COMMAND, max_size=12), st.booleans())
def test_any_input_translates_to_a_valid_config(lines: list[str], with_corosync: bool) -> None:
    text = "\n".join(lines)
    result = import_crm(text, "fuzz.crm", COROSYNC if with_corosync else None)
    parse_config(result.yaml_text, "fuzz.yaml")
    assert all(r.message for r in result.reports)


CS_LINES = ["totem {", "nodelist {", "node {", "quorum {", "interface {", "}", "}", "cluster_name: c", "cluster_name: b d",
            "token: 500", "token: x", "name: alpha", "name: beta", "name: bad name", "nodeid: 1", "nodeid: 2",
            "nodeid: z", "ring0_addr: 10.0.0.1", "ring0_addr: 10.0.0.1", "ring1_addr: 10.0.1.1", "ring2_addr: ::1",
            "ring0_addr: host", "two_node: 1", "bindnetaddr: 10.0.0.0", "garbage", "# comment", ""]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(CS_LINES), max_size=30))
def test_any_corosync_conf_translates_to_a_valid_config(lines: list[str]) -> None:
    result = import_crm("node 1: alpha\nprimitive a systemd:a\n", "in.crm", "\n".join(lines), "cs.conf")
    parse_config(result.yaml_text, "fuzz.yaml")


@pytest.mark.skipif(Path("/etc/corosync/corosync.conf").exists(), reason="this host has a corosync.conf")
def test_cli_without_corosync_conf_uses_placeholders(seed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["import-crm", SEED_CRM.name]) == 0
    out, err = capsys.readouterr()
    parse_config(out)
    assert "/etc/corosync/corosync.conf: not found" in err and "placeholder" in err
    assert cli.main(["import-crm", "--strict", SEED_CRM.name]) == 1
