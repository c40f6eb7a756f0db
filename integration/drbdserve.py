"""The drbdadm stand-in kept warm, for the bench: same code, without ~10 ms of Python start per call.

The real drbdadm answers in ~2 ms; the stand-in (integration/bin/drbdadm) is a Python program
and pays ~8 ms of interpreter start-up on every call before it does anything.  A planned
switchover makes three calls and a takeover two plus a fence-peer handler, so on these
machines the stand-in alone would add ~25 ms that no real cluster has, to hafd and to the
peers it is compared with alike.

So the bench runs this server once per test bed, and the nodes' /etc/hafd/drbdadm execs a
small C client (integration/drbdfast.c) instead of the interpreter.  For each call the server
forks; the child takes the client's stdin, stdout and stderr (passed over the socket), reads
mounts in the client's mount namespace (/proc/CLIENT/mountinfo, as the Python stand-in reads
its own), runs `drbdsim.drbdadm_main` unchanged, and sends the exit code back.  State, locks,
handlers and output are therefore exactly the Python stand-in's; integration/test_drbdsim.py
runs every stand-in test through both paths.  One difference, towards the real thing: handlers
run in the server's namespaces, not the caller's, as the kernel's usermode helpers run in the
initial ones (the bed's handlers enter their node with nsenter either way).

Run: `python3 -IS integration/drbdserve.py SOCKET` (prints "ready" once it listens; with stdin a
pipe, it ends when that pipe's writer closes it).  From
Python: `FastDrbdadm.start(dir)` compiles the client and starts the server; `close()` ends
both by PID.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import stat
import struct
import subprocess  # warm for the handlers the children run (drbdsim imports it when it needs it)
import sys
import time
from pathlib import Path

if __package__:
    from integration import drbdsim
else:  # run as a script under -IS: the stand-in's module sits next to us
    sys.path.append(os.path.dirname(os.path.realpath(__file__)))
    import drbdsim  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
CLIENT_SOURCE = HERE / "drbdfast.c"
MAX_REQUEST = 1 << 20
SPARE = 2  # both nodes may call at once (a fence-peer handler makes the peer's hafd call drbdadm)
EXIT_STANDIN = drbdsim.EXIT_STANDIN
_UCRED = struct.Struct("3i")
_CODE = struct.Struct("<i")
_LEN = struct.Struct("<I")


def serve(path: str, spare: int = SPARE) -> None:
    """Keep `spare` forked children waiting in accept(): a call never waits for a fork.

    Each child serves one call and exits (so calls overlap as separate drbdadm processes do);
    the parent only replaces the children that took a call.  Children also watch a pipe whose
    write end only the parent holds: if the parent dies, the idle ones exit instead of lingering.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)  # root only, like the rest of the bed's control files
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    listener.setblocking(False)
    took_r, took_w = os.pipe()
    alive_r, alive_w = os.pipe()

    # Children live for one call: no collector runs in them, and what the parent built stays
    # out of its reach, so fewer shared pages are copied on write after the fork.
    gc.freeze()

    def spawn() -> None:
        if os.fork() == 0:
            gc.disable()
            os.close(took_r)
            os.close(alive_w)
            code = 1
            try:
                conn = _accept(listener, alive_r)
                if conn is None:
                    code = 0
                else:
                    os.write(took_w, b"x")
                    listener.close()
                    code = _call(conn)
            finally:
                os._exit(code)

    for _ in range(spare):
        spawn()
    print("ready", flush=True)
    # stdin is a pipe from whoever started us: its end of file means they are gone (even
    # killed with SIGKILL, when no clean-up of theirs runs), and so should we be.
    watch = [took_r, 0] if stat.S_ISFIFO(os.fstat(0).st_mode) else [took_r]
    while True:
        ready, _, _ = select.select(watch, [], [], 1.0)
        if took_r in ready:
            for _ in os.read(took_r, 256):
                spawn()
        if len(watch) > 1 and watch[1] in ready and not os.read(watch[1], 4096):
            return
        _reap()


def _accept(listener: socket.socket, parent_alive: int) -> socket.socket | None:
    """Wait for a call (None: the parent is gone).  Every idle child wakes; one wins the accept."""
    while True:
        ready, _, _ = select.select([listener, parent_alive], [], [])
        if parent_alive in ready:
            return None
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        conn.setblocking(True)
        return conn


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _call(conn: socket.socket) -> int:
    """One drbdadm call in this (forked) child; the return value is only this child's exit status."""
    conn.settimeout(10.0)
    client = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))[0]
    data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3 or len(data) < _LEN.size:
        return EXIT_STANDIN  # not our client: closing tells it the call failed
    (want,) = _LEN.unpack_from(data)
    if want > MAX_REQUEST:
        return EXIT_STANDIN
    body = data[_LEN.size:]
    while len(body) < want:
        more = conn.recv(want - len(body))
        if not more:
            return EXIT_STANDIN
        body += more
    for target, fd in enumerate(fds):
        if fd != target:  # only if the server ran with a standard stream closed could it be
            os.dup2(fd, target)
            os.close(fd)
    parts = [p.decode("utf-8", "surrogateescape") for p in body.split(b"\0")[:-1]]
    try:
        n = int(parts[0])
        args, env_items = parts[1:1 + n], parts[1 + n:]
    except (IndexError, ValueError):
        print("drbd stand-in: malformed call", file=sys.stderr, flush=True)
        conn.sendall(_CODE.pack(EXIT_STANDIN))
        return EXIT_STANDIN
    env = dict(item.split("=", 1) for item in env_items if "=" in item)
    if env.get("PATH"):
        os.environ["PATH"] = env["PATH"]
    drbdsim.MOUNTINFO = f"/proc/{client}/mountinfo"
    try:
        code = drbdsim.drbdadm_main(args, env)
    except Exception as e:  # the stand-in's own bug: say so, as a crashed drbdadm would
        print(f"drbd stand-in: {type(e).__name__}: {e}", file=sys.stderr)
        code = EXIT_STANDIN
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except OSError:
            pass  # the caller went away (timed out): nobody reads it
    try:
        conn.sendall(_CODE.pack(code))
    except OSError:
        pass
    return 0


# -- from the test bed --------------------------------------------------------------------------------


class FastDrbdadmError(RuntimeError):
    """The client could not be built or the server did not start."""


class FastDrbdadm:
    """The compiled client and its running server for one test bed (or one test)."""

    def __init__(self, client: Path, socket_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.client, self.socket_path, self.proc = client, socket_path, proc

    @classmethod
    def start(cls, workdir: Path, timeout: float = 10.0) -> "FastDrbdadm":
        client = build_client(workdir / "drbdadm-fast")
        sock = workdir / "drbdadm.sock"
        # stdin: a pipe only we hold open; the server ends when it closes (see serve()).
        proc = subprocess.Popen([sys.executable if _usable(sys.executable) else "/usr/bin/python3", "-IS",
                                 str(HERE / "drbdserve.py"), str(sock)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, start_new_session=True)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            _end(proc)
            raise FastDrbdadmError(f"the drbdadm stand-in's server did not start within {timeout:g}s "
                                   f"(exit {proc.poll()})")
        return cls(client, sock, proc)

    def env(self) -> dict[str, str]:
        return {"HAFD_DRBD_SERVER": str(self.socket_path)}

    def install(self, dest: Path, node: str, state: Path) -> Path:
        """A client for one node at dest (its /etc/hafd/drbdadm): node, state and server compiled in."""
        return build_client(dest, node=node, state=str(state), server=str(self.socket_path))

    def close(self) -> None:
        _end(self.proc)
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass


def _usable(python: str) -> bool:
    return bool(python) and os.access(python, os.X_OK)


def _end(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGKILL the server's process group (its session: we started it so), then wait until it is empty."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=timeout)
    fds = []
    for pid in group_pids(proc.pid):  # not our children: wait on pidfds, which turn readable at exit
        try:
            fds.append(os.pidfd_open(pid))
        except OSError:
            pass
    wait_pidfds(fds, timeout)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def wait_pidfds(fds: list[int], timeout: float) -> int:
    """Wait until every pidfd's process has exited or timeout passes; close them all.

    Returns how many were still running at the end."""
    pending = list(fds)
    try:
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(pending, [], [], max(0.0, deadline - time.monotonic()))
            pending = [fd for fd in pending if fd not in ready]
        return len(pending)
    finally:
        for fd in fds:
            os.close(fd)


def group_pids(pgid: int) -> list[int]:
    """PIDs still in process group pgid (the server's forked children)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
                found.append(int(entry))
    return found


def build_client(dest: Path, *, node: str = "", state: str = "", server: str = "") -> Path:
    """gcc the client into dest, with compiled-in defaults for HAFD_DRBD_NODE/STATE/SERVER if given.

    FastDrbdadmError if there is no compiler or it fails."""
    defines = []
    for macro, value in (("HAFD_NODE", node), ("HAFD_STATE", state), ("HAFD_SERVER", server)):
        if value:
            if any(c in value for c in '"\\\n'):
                raise FastDrbdadmError(f"cannot compile {value!r} into the drbdadm client")
            defines.append(f'-D{macro}="{value}"')
    try:
        r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", *defines, "-o", str(dest), str(CLIENT_SOURCE)],
                           capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise FastDrbdadmError("gcc is not installed (scripts/setup.sh installs it)") from None
    if r.returncode != 0:
        raise FastDrbdadmError(f"gcc failed on {CLIENT_SOURCE}: {r.stderr.strip()}")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: drbdserve.py SOCKET", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    serve(sys.argv[1])
