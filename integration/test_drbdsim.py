"""The DRBD 9 stand-in (integration/bin/drbdadm, drbd-sim): DRBD's output, exit codes and rules.

Every command runs as the test bed runs it (a separate process per call, state in one JSON
file shared by both nodes); `status` output is read with hafd's own parser, and hafd's
DrbdAgent is driven against it through a per-node wrapper script.  Every test that calls
drbdadm runs twice: through the Python program the tests' beds use, and through the bench's
warm server and compiled client (integration/drbdserve.py, drbdfast.c), which must behave
exactly alike.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from hafd.agents.base import AgentContext, AgentError, Health
from hafd.agents.drbd import DrbdAgent
from hafd.ctl import drbd_handler_args
from hafd.core.config import DrbdParams, Programs, Resource
from hafd.core.drbdstatus import ConnectionState, DiskState, DrbdStatus, ReplicationState, Role, parse_resource
from integration.drbdserve import FastDrbdadm, FastDrbdadmError, group_pids, wait_pidfds

HERE = Path(__file__).resolve().parent
DRBDADM = HERE / "bin" / "drbdadm"
DRBDSIM = HERE / "bin" / "drbd-sim"
CALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Standin:
    """Which drbdadm: the Python program, or the compiled client of the warm server (+ its env)."""

    name: str
    program: Path
    env: dict[str, str] = field(default_factory=dict)


class Sim:
    """One state file, both nodes (nodeone = node id 0, nodetwo = 1), a scratch dir for handlers."""

    def __init__(self, tmp: Path, standin: Standin | None = None) -> None:
        self.dir = tmp
        self.state = tmp / "drbd.json"
        self.standin = standin or Standin("python", DRBDADM)
        self.program = self.standin.program
        self.ctl("init", "r0", "--nodes", "nodeone,nodetwo", "--device", "/dev/null-not-a-drbd")

    def env_vars(self, node: str) -> dict[str, str]:
        return {"HAFD_DRBD_NODE": node, "HAFD_DRBD_STATE": str(self.state), **self.standin.env}

    def env(self, node: str, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env_vars(node), **extra}

    def adm(self, node: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.program), *args], env=self.env(node, **extra), capture_output=True, text=True,
                              timeout=CALL_TIMEOUT)

    def ok(self, node: str, *args: str) -> str:
        r = self.adm(node, *args)
        assert r.returncode == 0, (args, r.returncode, r.stderr)
        assert r.stderr == ""
        return r.stdout

    def ctl(self, *args: str, rc: int = 0, **extra: str) -> Any:
        r = subprocess.run([str(DRBDSIM), "--state", str(self.state), *args], capture_output=True, text=True,
                           timeout=CALL_TIMEOUT, env={**os.environ, **extra})
        assert r.returncode == rc, (args, r.returncode, r.stderr)
        return json.loads(r.stdout) if rc == 0 and r.stdout.strip() else r

    def status(self, node: str) -> DrbdStatus:
        return parse_resource(self.ok(node, "status", "r0"), "r0")

    def handler(self, node: str, name: str, code: int, delay: float = 0.0) -> Path:
        """A handler that dumps its environment to a file and exits `code`."""
        out = self.dir / f"{node}.{name}.env"
        sleep = f"sleep {delay}; " if delay else ""
        self.ctl("set-handler", "r0", node, name, "--", "/bin/sh", "-c", f'{sleep}env > "$0"; exit {code}', str(out))
        return out

    def calls(self) -> list[dict[str, Any]]:
        calls = self.ctl("calls")
        assert isinstance(calls, list)
        return calls

    def show(self) -> dict[str, Any]:
        shown = self.ctl("show", "r0")
        assert isinstance(shown, dict)
        return shown


def start_fast_or_skip(workdir: Path) -> FastDrbdadm:
    try:
        return FastDrbdadm.start(workdir)
    except FastDrbdadmError as e:
        pytest.skip(f"the bench's drbdadm client cannot be built here: {e}")


@pytest.fixture(scope="session")
def fast_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastDrbdadm]:
    fast = start_fast_or_skip(tmp_path_factory.mktemp("drbdfast"))
    yield fast
    fast.close()


@pytest.fixture
def own_fast_standin(tmp_path: Path) -> Iterator[FastDrbdadm]:
    """A server of this test's own, for tests that end it."""
    fast = start_fast_or_skip(tmp_path)
    yield fast
    fast.close()


@pytest.fixture(params=["python", "fast"])
def standin(request: pytest.FixtureRequest) -> Standin:
    if request.param == "python":
        return Standin("python", DRBDADM)
    fast: FastDrbdadm = request.getfixturevalue("fast_standin")
    return Standin("fast", fast.client, fast.env())


@pytest.fixture
def sim(tmp_path: Path, standin: Standin) -> Sim:
    return Sim(tmp_path, standin)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def stderr_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return r.stderr.splitlines()


# -- output of every query command ------------------------------------------------------------------


def test_initial_state_every_query_command(sim: Sim) -> None:
    for me, peer in (("nodeone", "nodetwo"), ("nodetwo", "nodeone")):
        text = sim.ok(me, "status", "r0")
        assert text == f"r0 role:Secondary\n  disk:UpToDate open:no\n  {peer} role:Secondary\n    peer-disk:UpToDate\n\n"
        st = parse_resource(text, "r0")
        assert (st.role, st.disk, st.up_to_date, st.split_brain) == (Role.SECONDARY, DiskState.UPTODATE, True, False)
        (p,) = st.peers
        assert (p.name, p.connection, p.role, p.peer_disk) == (peer, ConnectionState.CONNECTED, Role.SECONDARY,
                                                               DiskState.UPTODATE)
        assert sim.ok(me, "role", "r0") == "Secondary\n"
        assert sim.ok(me, "cstate", "r0") == "Connected\n"
        assert sim.ok(me, "dstate", "r0") == "UpToDate/UpToDate\n"
    assert sim.ok("nodeone", "status") == sim.ok("nodeone", "status", "r0")  # no name: every resource that is up


@pytest.mark.parametrize(("args", "lines", "code"), [
    (["status", "r1"], ["r1: No such resource"], 10),
    (["role", "r1"], ["r1: Unknown resource"], 10),
    (["dstate", "r1"], ["r1: Unknown resource"], 10),
    (["cstate", "r1"], ["r1: No such connection"], 10),
    (["primary", "r1"], ["r1: Failure: (158) Unknown resource", "Command 'drbdsetup primary r1' terminated with exit code 10"], 10),
    (["secondary", "r1"], ["r1: Failure: (158) Unknown resource",
                           "Command 'drbdsetup secondary r1' terminated with exit code 10"], 10),
    (["up", "r1"], ["'r1' not defined in your config (for this host)."], 1),
    (["frobnicate", "r0"], ["drbdadm: Unknown command 'frobnicate'", "USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}"], 20),
    (["primary", "--bogus", "r0"], ["drbdadm: unrecognized option '--bogus'",
                                    "USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}"], 20),
])
def test_unknown_resource_and_bad_usage(sim: Sim, args: list[str], lines: list[str], code: int) -> None:
    r = sim.adm("nodeone", *args)
    assert (r.returncode, stderr_lines(r), r.stdout) == (code, lines, "")


def test_node_not_in_resource_and_resource_down(sim: Sim) -> None:
    r = sim.adm("nodethree", "status", "r0")
    assert (r.returncode, r.stderr) == (1, "'r0' not defined in your config (for this host).\n")
    assert sim.ok("nodetwo", "down", "r0") == ""
    for args, msg in ((["status", "r0"], "r0: No such resource"), (["role", "r0"], "r0: Unknown resource"),
                      (["cstate", "r0"], "r0: No such connection")):
        r = sim.adm("nodetwo", *args)
        assert (r.returncode, r.stderr) == (10, msg + "\n")
    assert sim.ok("nodetwo", "down", "r0") == ""  # down is idempotent
    assert sim.ok("nodetwo", "status") == ""  # no resource up
    assert sim.status("nodeone").peers[0].connection is ConnectionState.CONNECTING
    assert sim.ok("nodeone", "dstate", "r0") == "UpToDate/DUnknown\n"
    sim.ok("nodetwo", "up", "r0")
    r = sim.adm("nodetwo", "up", "r0")
    assert (r.returncode, stderr_lines(r)) == (10, ["r0: Failure: (161) Minor or volume exists already (delete it first)",
                                                    "Command 'drbdsetup new-minor r0 1 0' terminated with exit code 10"])
    sim.ok("nodetwo", "adjust", "r0")  # adjust: up only if needed
    assert sim.status("nodetwo").peers[0].connection is ConnectionState.CONNECTED


# -- promote / demote rules ------------------------------------------------------------------------------


def test_second_primary_refused_while_connected(sim: Sim) -> None:
    assert sim.ok("nodeone", "primary", "r0") == ""
    assert sim.ok("nodeone", "primary", "r0") == ""  # already Primary: nothing to do
    assert sim.status("nodeone").role is Role.PRIMARY
    seen = sim.status("nodetwo")
    assert (seen.role, seen.peers[0].role) == (Role.SECONDARY, Role.PRIMARY)
    r = sim.adm("nodetwo", "primary", "r0")
    assert (r.returncode, stderr_lines(r)) == (11, ["r0: State change failed: (-1) Multiple primaries not allowed by config",
                                                    "Command 'drbdsetup primary r0' terminated with exit code 11"])
    assert sim.ok("nodetwo", "role", "r0") == "Secondary\n"
    sim.ok("nodeone", "secondary", "r0")
    sim.ok("nodeone", "secondary", "r0")
    sim.ok("nodetwo", "primary", "r0")
    assert [(e["node"], e["argv"], e["exit_code"]) for e in sim.ctl("log")] == [
        ("nodeone", ["primary", "r0"], 0), ("nodeone", ["primary", "r0"], 0), ("nodetwo", ["primary", "r0"], 11),
        ("nodeone", ["secondary", "r0"], 0), ("nodeone", ["secondary", "r0"], 0), ("nodetwo", ["primary", "r0"], 0)]


@pytest.mark.parametrize("disk", ["Outdated", "Inconsistent", "Consistent"])
def test_promote_without_uptodate_data_refused_unless_forced(sim: Sim, disk: str) -> None:
    sim.ctl("disconnect", "r0")
    sim.ctl("set-disk", "r0", "nodetwo", disk)
    r = sim.adm("nodetwo", "primary", "r0")
    assert (r.returncode, stderr_lines(r)) == (17, ["r0: State change failed: (-2) Need access to UpToDate data",
                                                    "Command 'drbdsetup primary r0' terminated with exit code 17"])
    st = sim.status("nodetwo")
    assert (st.role, st.disk.value) == (Role.SECONDARY, disk)
    assert sim.ok("nodetwo", "primary", "--force", "r0") == ""
    st = sim.status("nodetwo")
    assert (st.role, st.disk) == (Role.PRIMARY, DiskState.UPTODATE)


def test_inconsistent_disk_may_be_promoted_while_connected_to_uptodate_peer(sim: Sim) -> None:
    sim.ctl("set-disk", "r0", "nodetwo", "Inconsistent")
    sim.ok("nodetwo", "primary", "r0")  # DRBD 9 reads from the peer
    assert sim.status("nodetwo").role is Role.PRIMARY


def test_diskless_cannot_be_forced(sim: Sim) -> None:
    sim.ctl("disconnect", "r0")
    sim.ctl("set-disk", "r0", "nodetwo", "Diskless")
    assert sim.ok("nodetwo", "status", "r0").splitlines()[1] == "  disk:Diskless client:no open:no"
    assert sim.adm("nodetwo", "primary", "--force", "r0").returncode == 17


def have_loop_tools() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "unshare", "mount"))


MOUNT_SCRIPT = """
set -u
mount -t ext4 "$DEV" "$MNT"
"$ADM" status r0 > "$OUT/status" 2>&1
"$ADM" secondary r0 2> "$OUT/secondary.err"; echo $? > "$OUT/secondary.rc"
"$ADM" down r0 2> "$OUT/down.err"; echo $? > "$OUT/down.rc"
"$ADM" secondary --force r0; echo $? > "$OUT/force.rc"
"$ADM" primary r0
umount "$MNT"
"$ADM" secondary r0; echo $? > "$OUT/after_umount.rc"
"""


@pytest.mark.root
@pytest.mark.skipif(not have_loop_tools(), reason="needs root, losetup, mkfs.ext4, unshare")
def test_secondary_refused_while_mounted_in_callers_namespace(sim: Sim, tmp_path: Path) -> None:
    image, mnt, out = tmp_path / "disk.img", tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True, timeout=60)
    loop = ""
    try:
        loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True,
                              timeout=30).stdout.strip()
        link = tmp_path / "by-res-r0"  # configured by a symlink, as /dev/drbd/by-res/r0: compared by major:minor
        link.symlink_to(loop)
        sim.ctl("init", "r0", "--nodes", "nodeone,nodetwo", "--device", str(link))
        sim.ok("nodeone", "primary", "r0")
        env = sim.env("nodeone", DEV=loop, MNT=str(mnt), OUT=str(out), ADM=str(sim.program))
        subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", MOUNT_SCRIPT], env=env,
                       check=True, timeout=60, capture_output=True)
    finally:
        if loop:
            subprocess.run(["losetup", "-d", loop], timeout=30, capture_output=True)
    inside = parse_resource((out / "status").read_text(), "r0")
    assert inside.volumes[0].open is True
    err = (out / "secondary.err").read_text().splitlines()
    assert (out / "secondary.rc").read_text().strip() == "11"
    assert err[:3] == ["r0: State change failed: (-12) Device is held open by someone", "additional info from kernel:",
                       "/dev/drbd1 open_cnt:1, writable:1; list of openers follows"]
    assert err[3].startswith("drbd1 opened by mount (pid ") and err[3].endswith(f"(mounted on {mnt})")
    assert err[4:] == ["Command 'drbdsetup secondary r0' terminated with exit code 11"]
    assert (out / "down.rc").read_text().strip() == "11"
    assert (out / "down.err").read_text().splitlines()[-1] == "Command 'drbdsetup down r0' terminated with exit code 11"
    assert (out / "force.rc").read_text().strip() == "0"
    assert (out / "after_umount.rc").read_text().strip() == "0"
    assert str(mnt) not in Path("/proc/self/mountinfo").read_text()  # the mount died with its namespace
    outside = sim.status("nodeone")  # this namespace never mounted it
    assert (outside.role, outside.volumes[0].open) == (Role.SECONDARY, False)
    sim.ok("nodeone", "primary", "r0")
    sim.ok("nodeone", "secondary", "r0")


# -- the fence-peer handler -------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "local_disk", "expect"), [
    (4, "UpToDate", {"peer_disk": "Outdated", "local": "UpToDate", "known": "Outdated", "suspended": None}),
    (5, "UpToDate", {"peer_disk": "UpToDate", "local": "UpToDate", "known": "Outdated", "suspended": None}),
    (5, "Inconsistent", {"peer_disk": "UpToDate", "local": "Inconsistent", "known": "DUnknown", "suspended": "fencing"}),
    (6, "UpToDate", {"peer_disk": "UpToDate", "local": "Outdated", "known": "DUnknown", "suspended": None}),
    (7, "UpToDate", {"peer_disk": "UpToDate", "local": "UpToDate", "known": "Outdated", "suspended": None}),
    (3, "UpToDate", {"peer_disk": "UpToDate", "local": "UpToDate", "known": "Inconsistent", "suspended": None}),
    (1, "UpToDate", {"peer_disk": "UpToDate", "local": "UpToDate", "known": "DUnknown", "suspended": "fencing"}),
])
def test_disconnect_runs_fence_peer_on_the_primary(sim: Sim, code: int, local_disk: str, expect: dict[str, Any]) -> None:
    sim.ctl("set-disk", "r0", "nodeone", local_disk)
    sim.ok("nodeone", "primary", "r0")
    one_env = sim.handler("nodeone", "fence-peer", code)
    two_env = sim.handler("nodetwo", "fence-peer", 7)
    ran = sim.ctl("disconnect", "r0")
    assert [(c["node"], c["handler"], c["trigger"], c["exit_code"]) for c in ran] == [
        ("nodeone", "fence-peer", "connection-lost", code)]
    assert not two_env.exists()  # the Secondary lost nothing it writes to
    env = read_env(one_env)
    assert {k: env[k] for k in ("DRBD_RESOURCE", "DRBD_MY_NODE_ID", "DRBD_PEER_NODE_ID", "DRBD_NODE_ID_0",
                                "DRBD_NODE_ID_1", "DRBD_CSTATE", "DRBD_MINOR", "DRBD_VOLUME")} == {
        "DRBD_RESOURCE": "r0", "DRBD_MY_NODE_ID": "0", "DRBD_PEER_NODE_ID": "1", "DRBD_NODE_ID_0": "nodeone",
        "DRBD_NODE_ID_1": "nodetwo", "DRBD_CSTATE": "Connecting", "DRBD_MINOR": "1", "DRBD_VOLUME": "0"}
    assert int(env["UP_TO_DATE_NODES"], 16) == (1 if local_disk == "UpToDate" else 0)
    assert drbd_handler_args(env) == {"resource": "r0", "peer": "nodetwo"}  # what `hafctl fence-peer` reads
    one, two = sim.status("nodeone"), sim.status("nodetwo")
    assert (one.role, one.disk.value, one.suspended) == (Role.PRIMARY, expect["local"], expect["suspended"])
    assert one.peers[0].connection is ConnectionState.CONNECTING and two.peers[0].connection is ConnectionState.CONNECTING
    assert two.disk.value == expect["peer_disk"]
    assert sim.ok("nodeone", "dstate", "r0") == f"{expect['local']}/{expect['known']}\n"
    assert sim.ok("nodeone", "cstate", "r0") == "Connecting\n"
    first = sim.ok("nodeone", "status", "r0").splitlines()[0]
    assert first == "r0 role:Primary" + (f" suspended:{expect['suspended']}" if expect["suspended"] else "")
    assert sim.calls() == ran
    sim.ctl("connect", "r0")  # reconnecting resumes frozen I/O
    assert sim.status("nodeone").suspended is None


def test_handler_timeout_counts_as_broken(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.handler("nodeone", "fence-peer", 4, delay=20)
    t0 = time.monotonic()
    (call,) = sim.ctl("disconnect", "r0", HAFD_DRBD_HANDLER_TIMEOUT="0.3")
    assert time.monotonic() - t0 < 5
    assert (call["exit_code"], call["error"]) == (None, "timed out after 0.3s, killed")
    assert sim.status("nodeone").suspended == "fencing"
    assert sim.status("nodetwo").disk is DiskState.UPTODATE


def test_the_handler_is_waited_for_without_polling() -> None:
    """Popen.wait(timeout) sleeps in growing steps (a 20 ms handler came back after 31.5 ms);
    real DRBD does not, so the stand-in waits on a pidfd, and still times out."""
    import subprocess

    from integration.drbdsim import _exited_within

    class NoPolling(subprocess.Popen):  # type: ignore[type-arg]
        def wait(self, timeout: float | None = None) -> int:
            assert timeout is None, "the polling wait was used"
            return super().wait()

    quick = NoPolling(["/bin/true"])
    assert _exited_within(quick, 5.0) and quick.wait() == 0
    stuck = NoPolling(["/bin/sleep", "5"])
    try:
        assert not _exited_within(stuck, 0.05)
    finally:
        stuck.kill()
        stuck.wait()


def test_missing_handler_program_counts_as_broken(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.ctl("set-handler", "r0", "nodeone", "fence-peer", "--", str(sim.dir / "no-such-handler"))
    (call,) = sim.ctl("disconnect", "r0")
    assert call["exit_code"] is None and call["error"].startswith("cannot run ")
    assert sim.status("nodeone").suspended == "fencing"


@pytest.mark.parametrize(("code", "rc", "role", "disk"), [
    (7, 0, Role.PRIMARY, "UpToDate"), (5, 0, Role.PRIMARY, "UpToDate"), (4, 0, Role.PRIMARY, "UpToDate"),
    (3, 0, Role.PRIMARY, "UpToDate"), (6, 11, Role.SECONDARY, "Outdated"), (1, 11, Role.SECONDARY, "UpToDate"),
])
def test_promote_while_disconnected_fences_the_peer_first(sim: Sim, code: int, rc: int, role: Role, disk: str) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.ctl("disconnect", "r0")  # nodeone has no handler: nothing runs
    env_file = sim.handler("nodetwo", "fence-peer", code)
    r = sim.adm("nodetwo", "primary", "r0")
    assert r.returncode == rc, r.stderr
    if rc:
        assert stderr_lines(r) == ["r0: State change failed: (-7) Refusing to be Primary while peer is not outdated",
                                   "Command 'drbdsetup primary r0' terminated with exit code 11"]
    env = read_env(env_file)
    assert (env["DRBD_MY_NODE_ID"], env["DRBD_PEER_NODE_ID"], env["DRBD_CSTATE"]) == ("1", "0", "Connecting")
    st = sim.status("nodetwo")
    assert (st.role, st.disk.value) == (role, disk)
    assert sim.status("nodeone").disk is DiskState.UPTODATE  # a Primary is never outdated by a 4
    assert [(c["node"], c["trigger"], c["exit_code"]) for c in sim.calls()] == [("nodetwo", "promote", code)]
    assert sim.ctl("log")[-1]["exit_code"] == rc


def test_promote_without_fencing_or_with_peer_known_outdated_runs_no_handler(sim: Sim) -> None:
    sim.ctl("crash", "r0", "nodeone")
    sim.ok("nodetwo", "primary", "r0")  # no fence-peer handler: DRBD does not fence
    assert sim.calls() == []
    sim.ok("nodetwo", "secondary", "r0")
    sim.handler("nodetwo", "fence-peer", 7)
    sim.ok("nodetwo", "primary", "r0")
    sim.ok("nodetwo", "secondary", "r0")
    sim.ok("nodetwo", "primary", "r0")  # the peer is known Outdated now: no second call
    assert [c["exit_code"] for c in sim.calls()] == [7]


# -- reconnect, resync, split brain, down/up ----------------------------------------------------------------


def test_connect_resyncs_the_outdated_peer_then_runs_after_resync_target(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.handler("nodeone", "fence-peer", 4)
    resync_env = sim.handler("nodetwo", "after-resync-target", 0)
    sim.ctl("disconnect", "r0")
    assert sim.status("nodetwo").disk is DiskState.OUTDATED
    assert sim.ctl("connect", "r0", "--hold-resync", "42.17") == []
    text = sim.ok("nodetwo", "status", "r0")
    assert text == ("r0 role:Secondary\n  disk:Inconsistent open:no\n  nodeone role:Primary\n"
                    "    replication:SyncTarget peer-disk:UpToDate done:42.17\n\n")
    two = parse_resource(text, "r0")
    assert (two.peers[0].replication, two.peers[0].done) == (ReplicationState.SYNC_TARGET, 42.17)
    one = sim.status("nodeone")
    assert (one.peers[0].replication, one.peers[0].peer_disk) == (ReplicationState.SYNC_SOURCE, DiskState.INCONSISTENT)
    assert sim.ok("nodetwo", "dstate", "r0") == "Inconsistent/UpToDate\n"
    assert not resync_env.exists()
    (call,) = sim.ctl("resync-finish", "r0")
    assert (call["node"], call["handler"], call["trigger"], call["exit_code"]) == ("nodetwo", "after-resync-target", "resync", 0)
    env = read_env(resync_env)
    assert (env["DRBD_MY_NODE_ID"], env["DRBD_PEER_NODE_ID"], env["DRBD_CSTATE"]) == ("1", "0", "Connected")
    assert int(env["UP_TO_DATE_NODES"], 16) == 0b11
    two = sim.status("nodetwo")
    assert (two.disk, two.peers[0].connection, two.peers[0].replication) == (
        DiskState.UPTODATE, ConnectionState.CONNECTED, ReplicationState.ESTABLISHED)
    # Without --hold-resync the resync completes at once, handler included.
    sim.ctl("disconnect", "r0")
    ran = sim.ctl("connect", "r0")
    assert [(c["node"], c["handler"]) for c in ran] == [("nodetwo", "after-resync-target")]
    assert sim.ok("nodetwo", "dstate", "r0") == "UpToDate/UpToDate\n"


def test_split_brain_shows_standalone_on_both(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.ctl("split-brain", "r0")
    for me, peer in (("nodeone", "nodetwo"), ("nodetwo", "nodeone")):
        assert sim.ok(me, "status", "r0").splitlines()[2] == f"  {peer} connection:StandAlone"
        st = sim.status(me)
        assert st.split_brain and st.peers[0].connection is ConnectionState.STANDALONE
        assert sim.ok(me, "cstate", "r0") == "StandAlone\n"
    sim.ok("nodetwo", "primary", "r0")  # StandAlone: nothing stops a second primary
    assert sim.calls() == []


def test_both_primary_while_disconnected_is_a_split_brain_on_connect(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.ctl("disconnect", "r0")
    sim.ok("nodetwo", "primary", "r0")
    sb = sim.handler("nodeone", "split-brain", 0)
    sim.ctl("connect", "r0")
    assert sim.status("nodeone").split_brain and sim.status("nodetwo").split_brain
    assert sb.exists()
    # Manual recovery (drbd.md): the victim demotes and discards its data.
    sim.ok("nodetwo", "secondary", "r0")
    sim.ok("nodetwo", "connect", "--discard-my-data", "r0")
    assert sim.status("nodeone").split_brain  # the survivor is still StandAlone...
    assert sim.status("nodetwo").peers[0].connection is ConnectionState.CONNECTING  # ...which the victim waits for
    sim.ok("nodeone", "connect", "r0")
    two = sim.status("nodetwo")
    assert (two.disk, two.peers[0].connection, two.peers[0].role) == (DiskState.UPTODATE, ConnectionState.CONNECTED,
                                                                      Role.PRIMARY)


def test_graceful_down_of_the_secondary_outdates_it_and_up_resyncs(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.handler("nodeone", "fence-peer", 1)
    resync_env = sim.handler("nodetwo", "after-resync-target", 0)
    sim.ok("nodetwo", "down", "r0")
    assert sim.calls() == []  # outdated on the way out: no fencing needed
    assert sim.ok("nodeone", "dstate", "r0") == "UpToDate/Outdated\n"
    assert sim.show()["node"]["nodetwo"]["disk"] == "Outdated"
    sim.ok("nodetwo", "up", "r0")
    assert resync_env.exists()
    assert sim.ok("nodetwo", "dstate", "r0") == "UpToDate/UpToDate\n"


def test_crash_of_the_primary_and_reboot(sim: Sim) -> None:
    sim.ok("nodeone", "primary", "r0")
    sim.handler("nodetwo", "fence-peer", 7)
    sim.ctl("crash", "r0", "nodeone")
    assert sim.calls() == []  # the Secondary runs nothing until it is asked to promote
    sim.ok("nodetwo", "primary", "r0")
    sim.ok("nodeone", "up", "r0")  # it comes back Secondary and is resynced from the new Primary
    one = sim.status("nodeone")
    assert (one.role, one.disk, one.peers[0].role, one.split_brain) == (Role.SECONDARY, DiskState.UPTODATE,
                                                                        Role.PRIMARY, False)


# -- hafd's drbd agent against the stand-in ------------------------------------------------------------------


def agent_for(sim: Sim, node: str) -> DrbdAgent:
    wrapper = sim.dir / f"drbdadm-{node}"
    assigns = " ".join(f"{k}={v}" for k, v in sim.env_vars(node).items())
    wrapper.write_text(f'#!/bin/sh\n{assigns} exec {sim.program} "$@"\n')
    wrapper.chmod(0o755)
    res = Resource(name="drbd", type="drbd", timeout=20.0, params=DrbdParams(resource="r0"))
    return DrbdAgent(res, AgentContext(programs=Programs(drbdadm=str(wrapper)), state_dir=str(sim.dir)))


async def test_hafd_drbd_agent_promotes_demotes_and_monitors(sim: Sim) -> None:
    one, two = agent_for(sim, "nodeone"), agent_for(sim, "nodetwo")
    assert (await one.monitor()).health is Health.STOPPED
    await one.start()
    status = await one.monitor()
    assert (status.health, status.detail) == (Health.RUNNING, "role:Primary disk:UpToDate peer nodetwo:Connected/UpToDate")
    with pytest.raises(AgentError) as ei:
        await two.start()
    assert ei.value.exit_code == 11
    assert ei.value.message.endswith("r0: State change failed: (-1) Multiple primaries not allowed by config")
    await one.stop()
    await one.stop()
    await two.start()
    assert ((await one.monitor()).health, (await two.monitor()).health) == (Health.STOPPED, Health.RUNNING)
    sim.ctl("split-brain", "r0")
    assert (await two.monitor()).extra["split_brain"] is True
    sim.ok("nodeone", "down", "r0")
    await one.stop()  # not up: `No such resource`, exit 10: stop succeeds


async def test_hafd_drbd_agent_refuses_an_outdated_disk(sim: Sim) -> None:
    one, two = agent_for(sim, "nodeone"), agent_for(sim, "nodetwo")
    sim.handler("nodeone", "fence-peer", 4)
    await one.start()
    sim.ctl("disconnect", "r0")
    assert (await two.monitor()).detail == "role:Secondary disk:Outdated peer nodeone:Connecting/DUnknown"
    with pytest.raises(AgentError) as ei:
        await two.start()
    assert ei.value.message == "refusing to promote r0: local disk is Outdated (not UpToDate); set force: true to override"
    assert not any(e["node"] == "nodetwo" for e in sim.ctl("log"))  # drbdadm primary was never even tried
    assert sim.ok("nodetwo", "role", "r0") == "Secondary\n"


# -- robustness and speed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "needle"), [
    (None, "does not exist (run `drbd-sim --state"),
    ("{not json", "is corrupt: Expecting property name"),
    ("{}", "is corrupt: not a hafd-drbd-sim/1 document"),
    ('{"format": "hafd-drbd-sim/1", "resources": {"r0": {"nodes": ["a"], "node": {}}}}', "is corrupt: resource r0:"),
])
def test_missing_or_corrupt_state_file_is_a_clear_error(tmp_path: Path, standin: Standin, content: str | None,
                                                       needle: str) -> None:
    state = tmp_path / "drbd.json"
    if content is not None:
        state.write_text(content)
    env = {**os.environ, "HAFD_DRBD_NODE": "nodeone", "HAFD_DRBD_STATE": str(state), **standin.env}
    for args in (["status", "r0"], ["primary", "r0"]):
        r = subprocess.run([str(standin.program), *args], env=env, capture_output=True, text=True,
                           timeout=CALL_TIMEOUT)
        assert r.returncode == 20 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([str(DRBDSIM), "--state", str(state), "show", "r0"], capture_output=True, text=True,
                       timeout=CALL_TIMEOUT)
    assert r.returncode == 20 and needle in r.stderr and "Traceback" not in r.stderr


def test_missing_environment_and_control_usage_errors(sim: Sim) -> None:
    r = subprocess.run([str(sim.program), "status", "r0"], env={"PATH": "/usr/bin:/bin", **sim.standin.env},
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert (r.returncode, r.stderr) == (20, "drbd stand-in: HAFD_DRBD_NODE and HAFD_DRBD_STATE must be set\n")
    assert "no resource 'r9'" in sim.ctl("show", "r9", rc=2).stderr
    assert "has no node 'nodethree'" in sim.ctl("crash", "r0", "nodethree", rc=2).stderr
    assert "unknown disk state 'Fine'" in sim.ctl("set-disk", "r0", "nodeone", "Fine", rc=2).stderr
    assert "no resync in progress" in sim.ctl("resync-finish", "r0", rc=2).stderr


def test_a_held_lock_makes_callers_fail_within_the_timeout(sim: Sim) -> None:
    fd = os.open(str(sim.state) + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t0 = time.monotonic()
        r = sim.adm("nodeone", "status", "r0", HAFD_DRBD_LOCK_TIMEOUT="0.3")
        assert time.monotonic() - t0 < 5
        assert r.returncode == 20 and "still held by another caller after 0.3s" in r.stderr
    finally:
        os.close(fd)
    assert sim.status("nodeone").role is Role.SECONDARY


def test_concurrent_promotes_from_both_nodes_serialise(sim: Sim) -> None:
    for _ in range(6):
        procs = {n: subprocess.Popen([str(sim.program), "primary", "r0"], env=sim.env(n), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True) for n in ("nodeone", "nodetwo")}
        rcs = {n: p.wait(timeout=CALL_TIMEOUT) for n, p in procs.items()}
        for p in procs.values():
            assert p.stderr is not None
            p.stderr.close()
        assert sorted(rcs.values()) == [0, 11]
        winner = next(n for n, rc in rcs.items() if rc == 0)
        roles = {n: sim.ok(n, "role", "r0").strip() for n in rcs}
        assert roles == {n: "Primary" if n == winner else "Secondary" for n in rcs}
        sim.ok(winner, "secondary", "r0")


def test_each_call_takes_a_few_milliseconds(sim: Sim) -> None:
    def timed(*args: str) -> float:
        t0 = time.monotonic()
        sim.ok("nodeone", *args)
        return time.monotonic() - t0

    status = [timed("status", "r0") for _ in range(15)]
    flips = [timed(verb, "r0") for _ in range(5) for verb in ("primary", "secondary")]
    print(f"drbdadm status median {statistics.median(status) * 1000:.1f} ms, "
          f"primary/secondary median {statistics.median(flips) * 1000:.1f} ms")
    assert statistics.median(status) < 0.15 and statistics.median(flips) < 0.15


# -- the bench's fast path itself (integration/drbdserve.py + drbdfast.c) -----------------------------------


def test_fast_client_without_a_server_fails_clearly(fast_standin: FastDrbdadm, tmp_path: Path) -> None:
    base = {"PATH": "/usr/bin:/bin", "HAFD_DRBD_NODE": "nodeone", "HAFD_DRBD_STATE": str(tmp_path / "s.json")}
    r = subprocess.run([str(fast_standin.client), "status", "r0"], env=base, capture_output=True, text=True,
                       timeout=CALL_TIMEOUT)
    assert (r.returncode, r.stderr) == (20, "drbd stand-in: HAFD_DRBD_SERVER is not set\n")
    gone = tmp_path / "gone.sock"
    r = subprocess.run([str(fast_standin.client), "status", "r0"], env={**base, "HAFD_DRBD_SERVER": str(gone)},
                       capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert r.returncode == 20
    assert r.stderr == f"drbd stand-in: cannot reach its server at {gone}: No such file or directory\n"


def test_fast_client_per_node_with_compiled_in_defaults(fast_standin: FastDrbdadm, tmp_path: Path) -> None:
    """The bench installs one client per node as /etc/hafd/drbdadm, with no wrapper script around it."""
    sim = Sim(tmp_path)
    one = fast_standin.install(tmp_path / "drbdadm-one", "nodeone", sim.state)
    bare = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run([str(one), "primary", "r0"], env=bare, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert (r.returncode, r.stderr) == (0, "")
    assert sim.ok("nodeone", "role", "r0") == "Primary\n"
    # The environment still wins over what was compiled in.
    r = subprocess.run([str(one), "role", "r0"], env={**bare, "HAFD_DRBD_NODE": "nodetwo"}, capture_output=True,
                       text=True, timeout=CALL_TIMEOUT)
    assert (r.returncode, r.stdout) == (0, "Secondary\n")
    with pytest.raises(FastDrbdadmError, match="cannot compile"):
        fast_standin.install(tmp_path / "bad", 'node"one', sim.state)


def test_fast_client_with_closed_standard_streams(fast_standin: FastDrbdadm, tmp_path: Path) -> None:
    """hafd gives drbdadm no stdin; a caller may also close stdout.  Neither may break the call."""
    sim = Sim(tmp_path, Standin("fast", fast_standin.client, fast_standin.env()))
    r = subprocess.run(["/bin/sh", "-c", f'exec 0<&- 1>&-; "{fast_standin.client}" primary r0; echo "rc=$?" >&2'],
                       env=sim.env("nodeone"), capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert r.stderr == "rc=0\n"
    assert sim.ok("nodeone", "role", "r0") == "Primary\n"


def test_fast_server_close_leaves_no_process(own_fast_standin: FastDrbdadm, tmp_path: Path) -> None:
    fast = own_fast_standin
    pgid = fast.proc.pid
    assert len(group_pids(pgid)) == 3  # the server and its two spare children
    sim = Sim(tmp_path, Standin("fast", fast.client, fast.env()))
    assert sim.ok("nodeone", "role", "r0") == "Secondary\n"  # a spare took it, another was forked
    fast.close()
    assert group_pids(pgid) == []
    assert not fast.socket_path.exists()


def test_fast_server_ends_with_whoever_started_it(own_fast_standin: FastDrbdadm) -> None:
    """Its stdin is a pipe from the starter: closed (as when the starter is killed), the server and its
    spare children exit by themselves, so a crashed test run leaves no server behind."""
    fast = own_fast_standin
    spares = [p for p in group_pids(fast.proc.pid) if p != fast.proc.pid]
    assert len(spares) == 2
    fds = [os.pidfd_open(p) for p in spares]  # before: their PIDs cannot be reused under us
    assert fast.proc.stdin is not None
    fast.proc.stdin.close()
    assert fast.proc.wait(timeout=10) == 0
    assert wait_pidfds(fds, 10.0) == 0, "a spare child outlived the server"
