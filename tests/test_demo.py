"""The demos (integration/demo.py, two nodes; integration/demo_single.py) run end to end and leave nothing behind.

It is the README's first command, so it is tested like a feature: exit status 0 means
every step it narrates behaved as it says (the demo checks each one itself), and
afterwards its namespace, loop device, directory and processes must all be gone.
The demo is run directly, not through scripts/demo.sh, which would run setup.sh.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "integration" / "demo_single.py"
TIMEOUT = 120.0
PREFIX = "hafd-demo-"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the demo needs root (namespaces, loop devices, mounts)"),
    pytest.mark.skipif(not os.access("/usr/sbin/dhcpd", os.X_OK), reason="needs isc-dhcp-server (setup.sh)"),
]


def demo_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)}


def loops_backed_by(directory: str) -> list[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=10).stdout
    return [line for line in out.splitlines() if directory in line]


def processes_mentioning(directory: str) -> list[int]:
    """Live processes whose command line names the demo's directory (hafd, dhcpd)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if directory.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def run_demo() -> tuple[int, str]:
    """Run the demo bounded; on a hang, SIGTERM lets it clean up before it is killed."""
    proc = subprocess.Popen([sys.executable, str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        pytest.fail(f"the demo did not finish within {TIMEOUT:g}s:\n{out[-4000:]}")
    return proc.returncode, out


def test_demo_runs_every_step_and_cleans_up() -> None:
    before = demo_namespaces()
    rc, out = run_demo()
    name = re.search(r"namespace (hafd-demo-[0-9a-f]{8})", out)
    assert name, out[-3000:]
    try:
        assert rc == 0, out[-6000:]
        assert "UNEXPECTED" not in out
        for line in (
            "ok: the configuration is valid, local node nodeone",
            "ok: 10.10.101.1/24 is on eth2",
            "ok: $DEMO/data is mounted in the node's mount namespace",
            "ok: ... and not in this machine's",
            "ok: dhcpd answers, naming the virtual IP as its server",
            "ok: stopped in reverse order: dhcpd, vip, data",
            "ok: reload rejected with file:line (exit 1)",
            "ok: hafctl says hafd is not running (exit 3)",
            "ok: all resources stopped",
            "Demo finished: every step behaved as expected.",
        ):
            assert line in out, f"missing {line!r} in:\n{out[-6000:]}"
        assert re.search(r"ok: hafd restarted dhcpd .*\(pid (\d+) -> (\d+)\), failures 1", out)
        assert re.search(r"ok: adopted: dhcpd kept its PID \d+, nothing was restarted", out)
        assert "$ $NODE hafctl --config $DEMO/hafd.yaml status" in out  # every step shows its command
        # Nothing left: namespace, loop device, directory, processes (zombies have no cmdline).
        assert_nothing_left(name.group(1), before)
    finally:
        cleanup_leftovers(name.group(1))


def cleanup_leftovers(name: str) -> None:
    """A failed demo must not leave its mess to the next test (by PID and by name)."""
    directory = f"/tmp/{name}"
    for pid in processes_mentioning(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for line in loops_backed_by(directory):
        subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True, timeout=10)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def assert_nothing_left(name: str, before: set[str]) -> None:
    directory = f"/tmp/{name}"
    assert demo_namespaces() - before == set()
    assert loops_backed_by(directory) == []
    assert not os.path.exists(directory)
    deadline = time.monotonic() + 5  # an orphaned dhcpd waits for PID 1 to reap it
    while processes_mentioning(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(directory) == []


def test_ctrl_c_in_the_middle_still_cleans_up() -> None:
    """Ctrl-C while hafd, dhcpd, the mount and the VIP are all up: exit 130, nothing left."""
    before = demo_namespaces()
    proc = subprocess.Popen([sys.executable, str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.stdout is not None
    out = b""
    name = ""
    try:
        deadline = time.monotonic() + 60
        while b"=== 5. dhcpd crashes" not in out and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                out += os.read(proc.stdout.fileno(), 65536)
        text = out.decode(errors="replace")
        m = re.search(r"namespace (hafd-demo-[0-9a-f]{8})", text)
        assert m and "=== 5. dhcpd crashes" in text, text[-3000:]
        name = m.group(1)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground group
        rest, _ = proc.communicate(timeout=60)
        text += rest.decode(errors="replace")
        assert proc.returncode == 130, text[-3000:]
        assert "interrupted" in text and f"removed namespace {name}" in text
        assert_nothing_left(name, before)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        if name:
            cleanup_leftovers(name)


def test_demo_refuses_clearly_without_its_tools(tmp_path: Path) -> None:
    """A machine without setup.sh's packages gets one line saying what to do, exit 2, and nothing made."""
    before = demo_namespaces()
    env = {"PATH": str(tmp_path)}  # no ip, nsenter, losetup ...
    res = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 2
    assert "missing:" in res.stderr and "scripts/setup.sh" in res.stderr
    assert demo_namespaces() - before == set()


# -- the two-node demo (integration/demo.py), the README's first command ------------------------------

DEMO2 = ROOT / "integration" / "demo.py"
TIMEOUT2 = 180.0


def bed_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


def cleanup_bed_leftovers(prefix: str) -> None:
    """A failed run must not leave its test bed to the next test (by PID and by name)."""
    directory = f"/tmp/hafd-testbed-{prefix}"
    for pid in processes_mentioning(directory):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for line in loops_backed_by(directory):
        subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True, timeout=10)
    for ns in bed_namespaces(prefix):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def assert_bed_gone(prefix: str) -> None:
    directory = f"/tmp/hafd-testbed-{prefix}"
    assert bed_namespaces(prefix) == []
    assert loops_backed_by(directory) == []
    assert not os.path.exists(directory)
    deadline = time.monotonic() + 5  # an orphaned dhcpd waits for PID 1 to reap it
    while processes_mentioning(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(directory) == []


def run_two_node_demo() -> tuple[int, str]:
    proc = subprocess.Popen([sys.executable, str(DEMO2)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT2)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
        pytest.fail(f"the two-node demo did not finish within {TIMEOUT2:g}s:\n{out[-4000:]}")
    return proc.returncode, out


def test_two_node_demo_crash_takeover_same_address_and_cleans_up() -> None:
    rc, out = run_two_node_demo()
    m = re.search(r"two-node demo \(test bed (h[0-9a-f]{4})\)", out)
    assert m, out[-3000:]
    prefix = m.group(1)
    try:
        assert rc == 0, out[-6000:]
        assert "UNEXPECTED" not in out
        # Both statuses shown, each as the node it was asked on.
        assert "$ $ONE hafctl status" in out and "$ $TWO hafctl status" in out
        assert "node nodeone is ACTIVE" in out and "node nodetwo is STANDBY" in out
        lease = re.search(r"ok: lease of (10\.10\.101\.\d+) from server 10\.10\.101\.1 \(BOUND\)", out)
        assert lease, out[-6000:]
        assert "ok: answered by nodeone" in out
        takeover = re.search(r"ok: takeover time: the first DHCPACK from nodetwo came (\d+) ms after the crash", out)
        assert takeover, out[-6000:]
        # Default timings: a peer is lost after 0.36 s, so the ACK cannot come sooner; 10 s is far too slow.
        assert 300 <= int(takeover.group(1)) < 10000, takeover.group(0)
        # The survivor's status: lost peer and the takeover timeline.
        assert "node nodetwo is ACTIVE" in out and re.search(r"nodeone +LOST", out)
        assert re.search(r"Last takeover: .*nodeone lost", out)
        assert re.search(r"took [\d.]+s: trigger \+0\.000s, elected .* dhcpd started \+[\d.]+s, active", out)
        assert re.search(r"\+ *\d+ ms  the prober's first DHCPACK from nodetwo", out)
        # The same address after the takeover, now from nodetwo.
        assert f"ok: same address {lease.group(1)} from server 10.10.101.1" in out
        assert "ok: answered by nodetwo" in out
        assert "=== Doing it by hand, step by step ===" in out
        assert "Demo finished: every step behaved as expected." in out
        assert_bed_gone(prefix)
    finally:
        cleanup_bed_leftovers(prefix)


def test_two_node_demo_interrupted_after_the_crash_still_cleans_up() -> None:
    """Ctrl-C while nodetwo serves after the takeover: exit 130, nothing left.

    The demo runs with --step on a pseudo-terminal, fed Enter for steps 1-4, so it is
    certainly waiting at step 5 (not already finished) when the SIGINT arrives.
    """
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(DEMO2), "--step"], stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    os.close(slave)
    assert proc.stdout is not None
    os.write(master, b"\n" * 4)
    out = b""
    prefix = ""
    marker = b"[press Enter for step 5"
    try:
        deadline = time.monotonic() + 90
        while marker not in out and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                out += os.read(proc.stdout.fileno(), 65536)
        text = out.decode(errors="replace")
        m = re.search(r"test bed (h[0-9a-f]{4})", text)
        assert m and marker.decode() in text and "ok: takeover time" in text, text[-3000:]
        prefix = m.group(1)
        assert bed_namespaces(prefix), "the test bed should still be up while the demo waits"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground group
        rest, _ = proc.communicate(timeout=60)
        text += rest.decode(errors="replace")
        assert proc.returncode == 130, text[-3000:]
        assert "interrupted" in text and f"removed namespaces {prefix}-sw" in text
        assert_bed_gone(prefix)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        if prefix:
            cleanup_bed_leftovers(prefix)


def test_two_node_demo_refuses_clearly_without_its_tools(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(DEMO2)], capture_output=True, text=True, timeout=30,
                         env={"PATH": str(tmp_path)})
    assert res.returncode == 2
    assert "missing:" in res.stderr and "scripts/setup.sh" in res.stderr and "dhclient" in res.stderr
