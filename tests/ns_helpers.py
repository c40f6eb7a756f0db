"""Network namespaces for tests: create, run inside, always delete.

Why a helper: netlink and packet sockets act on the namespace of the calling process,
so a test that must never touch the host runs its code in a child process inside a
namespace it created (`ip netns exec`).  Every namespace made here has a unique name
("hafdt-" + random hex) and is deleted by the fixture's teardown even when the test
fails, which also destroys the veths inside it.

Usage (tests/ is on sys.path under pytest's default import mode):

    from ns_helpers import NetNs, netns_factory, veth_pair   # noqa: F401 (fixture)

    def test_x(netns_factory):
        a, b = netns_factory(), netns_factory()
        veth_pair(a, "va", b, "vb")            # both ends up, one per namespace
        a.ip("addr", "add", "10.10.1.1/24", "dev", "va")
        out = a.run(["ping", "-c1", "-W1", "10.10.1.2"], check=False)
        data = a.python("import json; print(json.dumps(42))")  # last stdout line as JSON

Needs root (CAP_SYS_ADMIN); `requires_root` skips otherwise.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any, Callable, Iterator, Sequence

import pytest

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
PREFIX = "hafdt-"
# Every command here is bounded: a wedged child must fail the test, not hang the run.
DEFAULT_TIMEOUT = 30.0

requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def unique_name(prefix: str = PREFIX) -> str:
    """A name no other run uses; kept under 16 characters so it also fits an interface name."""
    return prefix + secrets.token_hex(4)


class NetNs:
    """One named network namespace (in /run/netns) that this process created."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def create(cls, prefix: str = PREFIX) -> "NetNs":
        name = unique_name(prefix)
        subprocess.run([IP, "netns", "add", name], check=True, capture_output=True, timeout=DEFAULT_TIMEOUT)
        ns = cls(name)
        try:
            ns.ip("link", "set", "lo", "up")
        except BaseException:
            ns.delete()
            raise
        return ns

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace and capture its output (text)."""
        return subprocess.run(
            [IP, "netns", "exec", self.name, *argv],
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start argv inside the namespace; the caller must kill/wait it by PID in a finally."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        return subprocess.Popen([IP, "netns", "exec", self.name, *argv], **kwargs)

    def python(self, source: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Run Python source (this interpreter, so the hafd venv) inside the namespace;
        return its last stdout line parsed as JSON.  A failure raises with its stderr."""
        res = self.run([sys.executable, "-c", source, *args], check=False, timeout=timeout)
        if res.returncode != 0:
            raise AssertionError(f"python in {self.name} exited {res.returncode}:\n{res.stderr}")
        lines = res.stdout.strip().splitlines()
        if not lines:
            raise AssertionError(f"python in {self.name} printed nothing; stderr:\n{res.stderr}")
        return json.loads(lines[-1])

    def ip(self, *args: str, check: bool = True) -> str:
        """`ip -n NS ARGS...`; returns stdout."""
        res = subprocess.run(
            [IP, "-n", self.name, *args], check=False, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT
        )
        if check and res.returncode != 0:
            raise AssertionError(f"ip -n {self.name} {' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
        return res.stdout

    def ip_json(self, *args: str) -> Any:
        """`ip -j -n NS ARGS...` parsed, e.g. ns.ip_json("addr", "show", "dev", "va")."""
        res = subprocess.run(
            [IP, "-j", "-n", self.name, *args], check=True, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT
        )
        return json.loads(res.stdout or "[]")

    def addresses(self, dev: str, family: str = "inet") -> list[str]:
        """The "addr/prefix" strings of one family ("inet", "inet6") on dev, for assertions."""
        out: list[str] = []
        for link in self.ip_json("-f", family, "addr", "show", "dev", dev):
            for a in link.get("addr_info", []):
                out.append(f"{a['local']}/{a['prefixlen']}")
        return out

    def delete(self) -> None:
        """Delete the namespace (and with it every interface inside); never raises."""
        subprocess.run([IP, "netns", "del", self.name], check=False, capture_output=True, timeout=DEFAULT_TIMEOUT)

    def __repr__(self) -> str:
        return f"NetNs({self.name!r})"


def veth_pair(a: NetNs, a_name: str, b: NetNs | None, b_name: str, *, up: bool = True) -> None:
    """A veth pair with a_name in namespace a and b_name in b (or also in a if b is None).

    Created inside `a` and moved, so no interface ever appears in the root namespace.
    """
    a.ip("link", "add", a_name, "type", "veth", "peer", "name", b_name)
    peer_ns = a
    if b is not None and b.name != a.name:
        a.ip("link", "set", b_name, "netns", b.name)
        peer_ns = b
    if up:
        a.ip("link", "set", a_name, "up")
        peer_ns.ip("link", "set", b_name, "up")


@pytest.fixture
def netns_factory() -> Iterator[Callable[[], NetNs]]:
    """Call it to get a fresh namespace; all of them are deleted at teardown, pass or fail."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    made: list[NetNs] = []

    def make(prefix: str = PREFIX) -> NetNs:
        ns = NetNs.create(prefix)
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in reversed(made):
            ns.delete()
