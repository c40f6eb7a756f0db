"""A DRBD 9 stand-in for the two-node test bed: `drbdadm` per node, one JSON state file for both.

These machines have no DRBD kernel module, yet hafd's drbd agent and its fence-peer answer
must be exercised against DRBD's real command line.  So `integration/bin/drbdadm` prints what
drbd-utils 9 prints and exits as it exits (/work/shared/reference/drbd.md), and the promote /
demote rules a real kernel enforces (second primary, no UpToDate data, fencing, held open) are
applied to a state both nodes share, so the refusals happen for the same reasons they would on
a real cluster.  `integration/bin/drbd-sim` is the test's hand on that state: lose or restore
the replication link, crash a node, outdate a disk, force a split brain, install handlers.

Environment (drbdadm): HAFD_DRBD_NODE (which node calls), HAFD_DRBD_STATE (the JSON file),
optional HAFD_DRBD_LOCK_TIMEOUT (s, default 10) and HAFD_DRBD_HANDLER_TIMEOUT (s, default 60).
Every read holds a shared, every change an exclusive flock on STATE + ".lock"; the lock is
released while a handler runs (a handler such as `hafctl fence-peer` may make the other node
call drbdadm), and the handler's verdict is applied only if the connection was not
re-established meanwhile, as the kernel does.

Model (two nodes; node id = position in `nodes`): per node up, role, disk, standalone,
suspended, `diverged` (it was Primary while not Connected: it holds writes the peer lacks),
`known` (what it knows of a peer's disk while not Connected: DUnknown, or Outdated after a
fence-peer verdict) and handlers; per resource the replication `link` and an `epoch` counted up
at each connection.  Two nodes are Connected when both are up, neither is StandAlone and the
link is up.  On connecting: both diverged -> split brain (both StandAlone); otherwise the node
without the newer data (the other one diverged, or it is not UpToDate while the other is) is
resynced (instantly, or held at a percentage) and its after-resync-target handler runs.  On
losing the connection a Primary becomes diverged and, with a fence-peer handler configured
(DRBD's `fencing resource-only`), runs it.

drbdadm [--force] [--discard-my-data] CMD [RES|all]: status role cstate dstate (shared lock, no
write), primary secondary up down adjust connect disconnect resume-io.  Unknown resource: exit 10
with drbd.md's message (up/down/adjust: "not defined in your config", exit 1); a node not in
the resource: exit 1; stand-in trouble (env, state file, lock): exit 20.
drbd-sim [--state FILE] init | disconnect | connect [--hold-resync PCT] [--discard-my-data NODE] |
resync-finish | split-brain | crash NODE | set-disk NODE STATE | set-role NODE ROLE |
set-handler NODE NAME -- ARGV | show (each with RES first) | calls [--clear] | log.
Mutating commands print the handler calls they ran (JSON list); usage errors exit 2.

Kept fast: stdlib C modules only on the hot path (a drbdadm call costs ~2-4 ms over the
interpreter's own start); subprocess and argparse are imported only where needed.
"""

from __future__ import annotations

import _json  # the C half of json: `import json` costs a third of a call (re, enum, regex compiles)
import _signal  # `signal` imports enum
import fcntl
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

FORMAT = "hafd-drbd-sim/1"
DISK_STATES = ("Diskless", "Attaching", "Detaching", "Failed", "Negotiating", "Inconsistent", "Outdated", "DUnknown",
               "Consistent", "UpToDate")
ROLES = ("Primary", "Secondary")
HANDLERS = ("fence-peer", "after-resync-target", "unfence-peer", "split-brain")
EXIT_STANDIN = 20  # drbdadm's exit for usage errors; also the stand-in's own trouble (state file, lock)
EXIT_CTL_USAGE = 2
LOCK_TIMEOUT = 10.0
HANDLER_TIMEOUT = 60.0
HANDLER_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"
LOG_MAX = 1000
OUTPUT_MAX = 4000
# Whose mounts `secondary` and `status` look at: the caller's own.  The warm server
# (integration/drbdserve.py) points this at its client's /proc/PID/mountinfo.
MOUNTINFO = "/proc/self/mountinfo"
# (text, drbdadm exit) of `State change failed: (code)`, as drbd_strings.c / drbdsetup print them.
REFUSALS = {
    -1: ("Multiple primaries not allowed by config", 11),
    -2: ("Need access to UpToDate data", 17),
    -7: ("Refusing to be Primary while peer is not outdated", 11),
    -12: ("Device is held open by someone", 11),
}
NO_DATA = ("Diskless", "Failed", "Attaching", "Detaching", "Negotiating", "DUnknown")
QUERY_UNKNOWN = {"status": "No such resource", "role": "Unknown resource", "dstate": "Unknown resource",
                 "cstate": "No such connection"}

if TYPE_CHECKING:
    State = dict[str, Any]
    Res = dict[str, Any]
    Job = dict[str, Any]
    Jobs = list[Job | None]


class _ScanContext:
    """What _json.make_scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(word: str) -> object:
        raise ValueError(f"{word} is not allowed here")


def json_loads(text: str) -> object:
    """json.loads without importing json; any trouble is re-read by json for its exact message."""
    try:
        obj, end = _json.make_scanner(_ScanContext())(text, len(text) - len(text.lstrip()))
        if text[end:].strip():
            raise ValueError("extra data")
        return obj
    except Exception:
        import json

        return json.loads(text)


def json_dumps(obj: object) -> str:
    """One line, sorted keys (json.dumps(sort_keys=True) without importing json)."""

    def unserialisable(o: object) -> object:
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    enc = _json.make_encoder({}, unserialisable, _json.encode_basestring_ascii, None, ": ", ", ", True, False, False)
    return "".join(enc(obj, 0))


class SimError(Exception):
    """A refusal or failure: the lines go to stderr, `code` is the exit status."""

    def __init__(self, *lines: str, code: int) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.code = code


def refusal(name: str, code: int, setup: str, extra: tuple[str, ...] = ()) -> SimError:
    text, exit_code = REFUSALS[code]
    lines = [f"{name}: State change failed: ({code}) {text}"]
    if extra:
        lines += ["additional info from kernel:", *extra]
    return SimError(*lines, f"Command '{setup}' terminated with exit code {exit_code}", code=exit_code)


def failure(name: str, code: int, text: str, setup: str) -> SimError:
    return SimError(f"{name}: Failure: ({code}) {text}", f"Command '{setup}' terminated with exit code 10", code=10)


def not_configured(name: str) -> SimError:
    return SimError(f"'{name}' not defined in your config (for this host).", code=1)


# -- the state file ----------------------------------------------------------------------------


class Store:
    """The JSON state file and its flock; every access goes through `locked()`."""

    def __init__(self, path: str, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_timeout = lock_timeout

    def locked(self, exclusive: bool = True) -> "_Lock":
        return _Lock(self.path + ".lock", fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, self.lock_timeout)

    def load(self, create: bool = False) -> State:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            if create:
                return {"format": FORMAT, "resources": {}, "calls": [], "log": []}
            raise SimError(f"drbd stand-in: state file {self.path} does not exist "
                           f"(run `drbd-sim --state {self.path} init RES ...` first)", code=EXIT_STANDIN) from None
        except OSError as e:
            raise SimError(f"drbd stand-in: cannot read state file {self.path}: {e.strerror}", code=EXIT_STANDIN) from None
        try:
            state = json_loads(text)
        except ValueError as e:
            raise SimError(f"drbd stand-in: state file {self.path} is corrupt: {e}", code=EXIT_STANDIN) from None
        problem = _invalid(state)
        if problem:
            raise SimError(f"drbd stand-in: state file {self.path} is corrupt: {problem}", code=EXIT_STANDIN)
        return state

    def save(self, state: State) -> None:
        tmp = f"{self.path}.tmp.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json_dumps(state) + "\n")
        os.replace(tmp, self.path)


class _Lock:
    """flock with a bounded wait: a wedged holder makes callers fail clearly, not hang."""

    def __init__(self, path: str, op: int, timeout: float) -> None:
        self.path, self.op, self.timeout = path, op, timeout
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, self.op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass

        def expired(signum: int, frame: object) -> None:
            raise TimeoutError

        old = _signal.signal(_signal.SIGALRM, expired)
        _signal.setitimer(_signal.ITIMER_REAL, max(self.timeout, 0.001))
        try:
            fcntl.flock(self.fd, self.op)
        except TimeoutError:
            os.close(self.fd)
            raise SimError(f"drbd stand-in: state lock {self.path} still held by another caller after "
                           f"{self.timeout:g}s", code=EXIT_STANDIN) from None
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, old)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the flock


_NODE_KEYS = {"up": bool, "role": str, "disk": str, "standalone": bool, "diverged": bool, "known": dict,
              "handlers": dict}


def _invalid(state: object) -> str:
    """Why a parsed state is unusable ("" if it is fine): a hand-edited file must not crash us."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"not a {FORMAT} document"
    if not isinstance(state.get("resources"), dict):
        return "'resources' is not an object"
    for name, res in state["resources"].items():
        if not isinstance(res, dict) or not isinstance(res.get("nodes"), list) or not isinstance(res.get("node"), dict):
            return f"resource {name}: needs 'nodes' (list) and 'node' (object)"
        for key, typ in (("device", str), ("minor", int), ("link", bool), ("epoch", int)):
            if not isinstance(res.get(key), typ):
                return f"resource {name}: {key!r} missing or not {typ.__name__}"
        for n in res["nodes"]:
            node = res["node"].get(n)
            if not isinstance(node, dict):
                return f"resource {name}: node {n!r} has no state"
            for key, typ in _NODE_KEYS.items():
                if not isinstance(node.get(key), typ):
                    return f"resource {name}: node {n}: {key!r} missing or not {typ.__name__}"
    return ""


# -- the model -----------------------------------------------------------------------------------


def new_resource(nodes: list[str], device: str, minor: int, addresses: list[str], up: bool) -> Res:
    return {
        "nodes": nodes, "device": device, "minor": minor, "addresses": addresses, "link": True, "epoch": 0,
        "resync": None, "hold_resync": None,
        "node": {n: {"up": up, "role": "Secondary", "disk": "UpToDate", "standalone": False, "suspended": None,
                     "diverged": False, "known": {p: "DUnknown" for p in nodes if p != n}, "handlers": {}}
                 for n in nodes},
    }


def peers_of(res: Res, x: str) -> list[str]:
    return [n for n in res["nodes"] if n != x]


def connected(res: Res, a: str, b: str) -> bool:
    na, nb = res["node"][a], res["node"][b]
    return bool(res["link"] and na["up"] and nb["up"] and not na["standalone"] and not nb["standalone"])


def cstate(res: Res, x: str, y: str) -> str:
    if res["node"][x]["standalone"]:
        return "StandAlone"
    return "Connected" if connected(res, x, y) else "Connecting"


def peer_disk(res: Res, x: str, y: str) -> str:
    return res["node"][y]["disk"] if connected(res, x, y) else res["node"][x]["known"].get(y, "DUnknown")


def links(res: Res) -> set[tuple[str, str]]:
    ns = res["nodes"]
    return {(a, b) for i, a in enumerate(ns) for b in ns[i + 1:] if connected(res, a, b)}


def fencing(res: Res, x: str) -> bool:
    return bool(res["node"][x]["handlers"].get("fence-peer"))


def settle(name: str, res: Res, before: set[tuple[str, str]], *, quiet: bool = False) -> Jobs:
    """Apply what connecting and disconnecting imply; return the handlers to run (after the lock)."""
    jobs: Jobs = []
    ns = res["nodes"]
    for i, a in enumerate(ns):
        for b in ns[i + 1:]:
            now = connected(res, a, b)
            if now and (a, b) not in before:
                jobs += _establish(name, res, a, b)
            elif not now and (a, b) in before:
                jobs += _lose(name, res, a, b, quiet)
    return [j for j in jobs if j]


def _establish(name: str, res: Res, a: str, b: str) -> Jobs:
    na, nb = res["node"][a], res["node"][b]
    if na["diverged"] and nb["diverged"]:
        # "Split-Brain detected but unresolved, dropping connection!"
        na["standalone"] = nb["standalone"] = True
        return [make_job(name, res, a, "split-brain", b, "split-brain"), make_job(name, res, b, "split-brain", a, "split-brain")]
    res["epoch"] += 1
    for n, p in ((na, b), (nb, a)):
        n["known"][p] = "DUnknown"
        if n.get("suspended") == "fencing":
            n["suspended"] = None
    src, tgt = _sync_direction(res, a, b)
    if src is None:
        na["diverged"] = nb["diverged"] = False
        return []
    res["node"][tgt]["disk"] = "Inconsistent"
    res["resync"] = {"source": src, "target": tgt, "done": 0.0}
    if res.get("hold_resync") is not None:
        res["resync"]["done"] = float(res["hold_resync"])
        return []
    return finish_resync(name, res)


def _sync_direction(res: Res, a: str, b: str) -> tuple[str | None, str | None]:
    na, nb = res["node"][a], res["node"][b]
    if na["disk"] in NO_DATA or nb["disk"] in NO_DATA:
        return None, None
    if na["diverged"] != nb["diverged"]:
        src, tgt = (a, b) if na["diverged"] else (b, a)
        if res["node"][src]["disk"] == "UpToDate":
            return src, tgt
    if na["disk"] == "UpToDate" and nb["disk"] != "UpToDate":
        return a, b
    if nb["disk"] == "UpToDate" and na["disk"] != "UpToDate":
        return b, a
    return None, None


def finish_resync(name: str, res: Res) -> Jobs:
    rs = res["resync"]
    res["resync"] = None
    res["hold_resync"] = None
    src, tgt = rs["source"], rs["target"]
    res["node"][tgt]["disk"] = "UpToDate"
    res["node"][src]["diverged"] = res["node"][tgt]["diverged"] = False
    return [make_job(name, res, tgt, "after-resync-target", src, "resync"),
            make_job(name, res, src, "unfence-peer", tgt, "resync")]


def _lose(name: str, res: Res, a: str, b: str, quiet: bool) -> Jobs:
    jobs: Jobs = []
    rs = res.get("resync")
    if rs and {rs["source"], rs["target"]} == {a, b}:
        res["resync"] = None  # aborted: the target stays Inconsistent
    for x, y in ((a, b), (b, a)):
        nx = res["node"][x]
        if not nx["up"] or nx["role"] != "Primary":
            continue
        nx["diverged"] = True
        if not quiet and fencing(res, x) and nx["known"].get(y, "DUnknown") == "DUnknown":
            jobs.append(make_job(name, res, x, "fence-peer", y, "connection-lost"))
    return jobs


def graceful_outdate(res: Res, leaving: str) -> None:
    """`down` / `disconnect` while Connected: with fencing the Secondary side is outdated on the way
    out (drbd_nl.c conn_try_disconnect), so the Primary needs no fence-peer handler for it."""
    for other in peers_of(res, leaving):
        if not connected(res, leaving, other):
            continue
        for p, s in ((other, leaving), (leaving, other)):
            np_, ns_ = res["node"][p], res["node"][s]
            if np_["role"] == "Primary" and fencing(res, p) and ns_["role"] == "Secondary" \
                    and ns_["disk"] in ("UpToDate", "Consistent"):
                ns_["disk"] = "Outdated"
                np_["known"][s] = "Outdated"


def apply_fence(res: Res, job: Job, code: int | None) -> tuple[str, bool]:
    """DRBD's reading of a fence-peer exit code (drbd.md); returns (outcome, peer now fenced)."""
    x, y, trigger = job["node"], job["peer"], job["trigger"]
    nx, ny = res["node"][x], res["node"][y]
    if connected(res, x, y) or res["epoch"] != job["epoch"]:
        return "ignored: the connection was re-established while the handler ran", False
    frozen = trigger == "connection-lost" and nx["role"] == "Primary"
    if code == 3:
        nx["known"][y] = "Inconsistent"
        return "peer is inconsistent or worse", True
    if code == 4:
        nx["known"][y] = "Outdated"
        if ny["disk"] in ("UpToDate", "Consistent") and ny["role"] != "Primary":
            ny["disk"] = "Outdated"
            return "peer was fenced: its disk is Outdated", True
        return f"peer was fenced (its disk stays {ny['disk']}, role {ny['role']})", True
    if code == 5:
        if nx["disk"] == "UpToDate":
            nx["known"][y] = "Outdated"
            return "peer is unreachable, assumed to be dead", True
        if frozen:
            nx["suspended"] = "fencing"
            return "peer unreachable, doing nothing since disk != UpToDate: I/O frozen", False
        return "peer unreachable, doing nothing since disk != UpToDate", False
    if code == 6:
        if nx["disk"] in ("UpToDate", "Consistent"):
            nx["disk"] = "Outdated"
        return "peer is active: outdated myself", False
    if code == 7:
        nx["known"][y] = "Outdated"
        return "peer was stonithed", True
    if frozen:
        nx["suspended"] = "fencing"
        return f"fence-peer helper broken, returned {code}: I/O frozen", False
    return f"fence-peer helper broken, returned {code}", False


# -- handlers --------------------------------------------------------------------------------------


def make_job(name: str, res: Res, x: str, handler: str, y: str, trigger: str) -> Job | None:
    """Snapshot (under the lock) what a handler run needs; None if the handler is not configured."""
    argv = res["node"][x]["handlers"].get(handler)
    if not argv:
        return None
    return {"resource": name, "node": x, "peer": y, "handler": handler, "trigger": trigger, "argv": list(argv),
            "env": handler_env(name, res, x, y), "epoch": res["epoch"]}


def handler_env(name: str, res: Res, x: str, y: str) -> dict[str, str]:
    """DRBD's handler environment (drbd.md): what `hafctl fence-peer` reads."""
    ids = {n: i for i, n in enumerate(res["nodes"])}
    mask = sum(1 << ids[n] for n in res["nodes"]
               if (n == x and res["node"][x]["disk"] == "UpToDate") or (n != x and peer_disk(res, x, n) == "UpToDate"))
    env = {
        "HOME": "/", "TERM": "linux",
        "PATH": HANDLER_PATH + (":" + os.environ["PATH"] if os.environ.get("PATH") else ""),
        "DRBD_RESOURCE": name, "DRBD_CONF": "/etc/drbd.conf",
        "DRBD_MY_NODE_ID": str(ids[x]), "DRBD_PEER_NODE_ID": str(ids[y]),
        "DRBD_MINOR": str(res["minor"]), f"DRBD_MINOR_{0}": str(res["minor"]), "DRBD_VOLUME": "0",
        "DRBD_CSTATE": cstate(res, x, y), "UP_TO_DATE_NODES": f"0x{mask:016X}",
        "DRBD_MY_AF": "ipv4", "DRBD_PEER_AF": "ipv4",
    }
    for n, i in ids.items():
        env[f"DRBD_NODE_ID_{i}"] = n
    addrs = res.get("addresses") or []
    if len(addrs) == len(res["nodes"]):
        env["DRBD_MY_ADDRESS"], env["DRBD_PEER_ADDRESS"] = addrs[ids[x]], addrs[ids[y]]
    return env


def _exited_within(proc: Any, timeout: float) -> bool:
    """Wait for the handler to end, waking the moment it does.

    Not Popen.wait(timeout): with a timeout it polls with exponential back-off (0.5, 1, 2,
    ... 16 ms, then 32), so a handler that took 20 ms came back after 31.5 ms.  Real DRBD
    waits for its handler without polling; a pidfd is readable exactly when the process
    has exited."""
    import select

    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel): the polling wait, still bounded
        import subprocess

        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(ready)


def _run_handler(job: Job, scratch: str, timeout: float) -> dict[str, Any]:
    """Run argv as given (no shell), output to files so a lingering grandchild cannot wedge us."""
    import subprocess

    rec: dict[str, Any] = {k: job[k] for k in ("resource", "node", "peer", "handler", "trigger", "argv")}
    rec["env"] = {k: v for k, v in job["env"].items() if k.startswith(("DRBD_", "UP_TO_DATE"))}
    rec.update(time=time.time(), exit_code=None, error="", stdout="", stderr="")
    t0 = time.monotonic()
    outs = [f"{scratch}.handler.{os.getpid()}.{tag}" for tag in ("out", "err")]
    try:
        with open(outs[0], "wb") as out, open(outs[1], "wb") as err:
            try:
                proc = subprocess.Popen(job["argv"], env=job["env"], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        cwd="/")
            except OSError as e:
                rec["error"] = f"cannot run {job['argv'][0]}: {e.strerror or e}"
                proc = None
            if proc is not None:
                if _exited_within(proc, timeout):
                    rc = proc.wait()
                else:
                    proc.kill()
                    rc = proc.wait()
                    rec["error"] = f"timed out after {timeout:g}s, killed"
                if rc >= 0 and not rec["error"]:
                    rec["exit_code"] = rc
                elif not rec["error"]:
                    rec["error"] = f"killed by signal {-rc}"
        for key, p in zip(("stdout", "stderr"), outs):
            with open(p, "rb") as f:
                rec[key] = f.read()[-OUTPUT_MAX:].decode("utf-8", "replace")
    finally:
        for p in outs:
            try:
                os.unlink(p)
            except OSError:
                pass
    rec["duration"] = round(time.monotonic() - t0, 4)
    return rec


def run_jobs(store: Store, jobs: Jobs, timeout: float) -> list[dict[str, Any]]:
    """Run each handler without the lock, then apply its verdict and record it under the lock."""
    records = []
    for job in filter(None, jobs):
        rec = _run_handler(job, store.path, timeout)
        with store.locked():
            state = store.load()
            res = state["resources"].get(job["resource"])
            rec["outcome"], rec["fenced"] = "", False
            if res is None:
                rec["outcome"] = "resource gone"
            elif job["handler"] == "fence-peer":
                rec["outcome"], rec["fenced"] = apply_fence(res, job, rec["exit_code"])
            state["calls"] = (state.get("calls") or [])[-(LOG_MAX - 1):] + [rec]
            store.save(state)
        records.append(rec)
    return records


# -- the caller's mounts --------------------------------------------------------------------------


def mounts_of(device: str) -> list[str]:
    """Mount points in the CALLER's mount namespace whose source is `device` (by major:minor)."""
    try:
        st = os.stat(device)
        want = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if st.st_rdev else ""
    except OSError:
        want = ""
    real = os.path.realpath(device)
    found = []
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 2:
            continue
        source = _unescape(rest[1])
        if (want and fields[2] == want) or (source.startswith("/") and os.path.realpath(source) == real):
            found.append(_unescape(fields[4]))
    return found


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


# -- drbdadm ------------------------------------------------------------------------------------------


def render_status(name: str, res: Res, x: str) -> str:
    nx = res["node"][x]
    lines = [f"{name} role:{nx['role']}" + (f" suspended:{nx['suspended']}" if nx.get("suspended") else "")]
    dev = f"disk:{nx['disk']}" + (" client:no" if nx["disk"] == "Diskless" else "")
    dev += f" open:{'yes' if mounts_of(res['device']) else 'no'}"
    lines.append("  " + dev)
    rs = res.get("resync")
    for y in peers_of(res, x):
        cs = cstate(res, x, y)
        if cs != "Connected":
            lines.append(f"  {y} connection:{cs}")
            continue
        lines.append(f"  {y} role:{res['node'][y]['role']}")
        pd = f"peer-disk:{res['node'][y]['disk']}"
        if rs and {rs["source"], rs["target"]} == {x, y}:
            pd = f"replication:{'SyncSource' if rs['source'] == x else 'SyncTarget'} {pd} done:{rs['done']:.2f}"
        lines.append("    " + pd)
    return "\n".join(lines) + "\n\n"


class Adm:
    """One drbdadm invocation on node `node`."""

    def __init__(self, store: Store, node: str, handler_timeout: float, argv: list[str]) -> None:
        self.store, self.node, self.handler_timeout, self.argv = store, node, handler_timeout, argv
        self.out: list[str] = []
        self.pending = False  # a step that stopped to run a handler: its outcome is logged later

    def resource(self, state: State, name: str, setup: str, *, need_up: bool = True) -> Res:
        res = state["resources"].get(name)
        if res is None:
            raise failure(name, 158, "Unknown resource", setup)
        if self.node not in res["nodes"]:
            raise not_configured(name)
        if need_up and not res["node"][self.node]["up"]:
            raise failure(name, 158, "Unknown resource", setup)
        return res

    def note(self, state: State, code: int) -> None:
        entry = {"time": time.time(), "node": self.node, "argv": self.argv, "exit_code": code}
        state["log"] = (state.get("log") or [])[-(LOG_MAX - 1):] + [entry]

    def change(self, name: str, setup: str, fn: Any, *, need_up: bool = True) -> Jobs:
        """Run fn(res) under the exclusive lock; log the call whatever happens."""
        with self.store.locked():
            state = self.store.load()
            try:
                res = self.resource(state, name, setup, need_up=need_up)
                jobs = fn(res) or []
            except SimError as e:
                self.note(state, e.code)
                self.store.save(state)
                raise
            if not self.pending:
                self.note(state, 0)
            self.store.save(state)
        return jobs

    def query(self, cmd: str, names: list[str]) -> None:
        with self.store.locked(exclusive=False):
            state = self.store.load()
        if not names or names == ["all"]:
            names = [n for n, r in state["resources"].items()
                     if self.node in r["nodes"] and r["node"][self.node]["up"]]
        for name in names:
            res = state["resources"].get(name)
            if res is not None and self.node not in res["nodes"]:
                raise not_configured(name)
            if res is None or not res["node"][self.node]["up"]:
                raise SimError(f"{name}: {QUERY_UNKNOWN[cmd]}", code=10)
            peers = peers_of(res, self.node)
            if cmd == "status":
                self.out.append(render_status(name, res, self.node))
            elif cmd == "role":
                self.out.append(res["node"][self.node]["role"] + "\n")
            elif cmd == "cstate":
                self.out += [cstate(res, self.node, y) + "\n" for y in peers]
            else:
                self.out += [f"{res['node'][self.node]['disk']}/{peer_disk(res, self.node, y)}\n" for y in peers[:1]]

    def primary(self, name: str, force: bool) -> None:
        setup = f"drbdsetup primary {name}" + (" --force" if force else "")
        tried: set[str] = set()
        for _ in range(4):
            job: Jobs = [None]

            def step(res: Res) -> None:
                x, nx = self.node, res["node"][self.node]
                if nx["role"] == "Primary":
                    return
                peers = peers_of(res, x)
                if any(connected(res, x, y) and res["node"][y]["role"] == "Primary" for y in peers):
                    raise refusal(name, -1, setup)
                unknown = [y for y in peers if not connected(res, x, y) and nx["known"].get(y) == "DUnknown"]
                disk = nx["disk"]
                reachable = disk == "UpToDate" or any(connected(res, x, y) and res["node"][y]["disk"] == "UpToDate"
                                                      for y in peers)
                consistent_fenceable = disk == "Consistent" and unknown and fencing(res, x)
                promote_consistent = disk == "Consistent" and not unknown
                if not (reachable or consistent_fenceable or promote_consistent or (force and disk != "Diskless")):
                    raise refusal(name, -2, setup)
                if not force and unknown and fencing(res, x):
                    left = [y for y in unknown if y not in tried]
                    if not left:
                        raise refusal(name, -7, setup)
                    job[0] = make_job(name, res, x, "fence-peer", left[0], "promote")
                    self.pending = True
                    return
                if force or promote_consistent:
                    if disk != "Diskless":
                        nx["disk"] = "UpToDate"
                nx["role"] = "Primary"
                if any(not connected(res, x, y) for y in peers):
                    nx["diverged"] = True

            self.pending = False
            self.change(name, setup, step)
            if job[0] is None:
                return
            tried.add(job[0]["peer"])
            rec = run_jobs(self.store, [job[0]], self.handler_timeout)[0]
            if not rec["fenced"]:
                with self.store.locked():
                    state = self.store.load()
                    err = refusal(name, -7, setup)
                    self.note(state, err.code)
                    self.store.save(state)
                raise err
        raise refusal(name, -7, setup)

    def secondary(self, name: str, force: bool, setup: str = "") -> None:
        setup = setup or f"drbdsetup secondary {name}" + (" --force" if force else "")

        def step(res: Res) -> None:
            nx = res["node"][self.node]
            if nx["role"] == "Secondary":
                return
            self._demote(name, res, force, setup)

        self.change(name, setup, step)

    def _demote(self, name: str, res: Res, force: bool, setup: str) -> None:
        mounted = [] if force else mounts_of(res["device"])
        if mounted:
            minor = res["minor"]
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            extra = (f"/dev/drbd{minor} open_cnt:{len(mounted)}, writable:1; list of openers follows",
                     *(f"drbd{minor} opened by mount (pid 0) at {stamp} (mounted on {m})" for m in mounted))
            raise refusal(name, -12, setup, extra)
        res["node"][self.node]["role"] = "Secondary"

    def up(self, name: str, adjust: bool) -> Jobs:
        def step(res: Res) -> Jobs:
            nx = res["node"][self.node]
            if nx["up"]:
                if adjust:
                    return []
                raise failure(name, 161, "Minor or volume exists already (delete it first)",
                              f"drbdsetup new-minor {name} {res['minor']} 0")
            before = links(res)
            nx.update(up=True, role="Secondary", standalone=False, suspended=None)
            return settle(name, res, before)

        return self._known(name, lambda: self.change(name, f"drbdsetup new-resource {name}", step, need_up=False))

    def down(self, name: str) -> Jobs:
        setup = f"drbdsetup down {name}"

        def step(res: Res) -> Jobs:
            nx = res["node"][self.node]
            if not nx["up"]:
                return []
            if nx["role"] == "Primary":
                self._demote(name, res, False, setup)
            before = links(res)
            graceful_outdate(res, self.node)
            nx.update(up=False, standalone=False, suspended=None)
            return settle(name, res, before)

        return self._known(name, lambda: self.change(name, setup, step, need_up=False))

    def _known(self, name: str, fn: Any) -> Jobs:
        """up/down/adjust read drbd.conf: a resource not in it is exit 1, not 10."""
        try:
            return fn()
        except SimError as e:
            if e.lines and e.lines[0].startswith(f"{name}: Failure: (158)"):
                raise not_configured(name) from None
            raise

    def connect(self, name: str, discard: bool) -> Jobs:
        def step(res: Res) -> Jobs:
            nx = res["node"][self.node]
            before = links(res)
            nx["standalone"] = False
            if discard:
                nx["diverged"] = False
                if nx["disk"] == "UpToDate":
                    nx["disk"] = "Outdated"  # its data is to be overwritten: it must become the sync target
            return settle(name, res, before)

        return self.change(name, f"drbdsetup connect {name}", step)

    def disconnect(self, name: str) -> Jobs:
        def step(res: Res) -> Jobs:
            before = links(res)
            graceful_outdate(res, self.node)
            res["node"][self.node]["standalone"] = True
            return settle(name, res, before)

        return self.change(name, f"drbdsetup disconnect {name}", step)

    def resume_io(self, name: str) -> None:
        self.change(name, f"drbdsetup resume-io {name}", lambda res: res["node"][self.node].update(suspended=None))


ADM_COMMANDS = ("status", "role", "cstate", "dstate", "primary", "secondary", "up", "down", "adjust", "connect",
                "disconnect", "resume-io")
ADM_USAGE = "USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}"


def drbdadm_main(argv: list[str], env: Mapping[str, str]) -> int:
    try:
        out = _drbdadm(argv, env)
    except SimError as e:
        sys.stdout.flush()
        for line in e.lines:
            print(line, file=sys.stderr)
        return e.code
    sys.stdout.write(out)
    return 0


def _float_env(env: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(env.get(key) or default)
    except ValueError:
        raise SimError(f"drbd stand-in: {key}={env.get(key)!r} is not a number", code=EXIT_STANDIN) from None


def _drbdadm(argv: list[str], env: Mapping[str, str]) -> str:
    node, path = env.get("HAFD_DRBD_NODE", ""), env.get("HAFD_DRBD_STATE", "")
    if not node or not path:
        raise SimError("drbd stand-in: HAFD_DRBD_NODE and HAFD_DRBD_STATE must be set", code=EXIT_STANDIN)
    flags, words = set(), []
    for a in argv:
        if a in ("--force", "--discard-my-data"):
            flags.add(a)
        elif a in ("--", "-v", "--verbose", "-s", "--statistics"):
            continue
        elif a.startswith("-"):
            raise SimError(f"drbdadm: unrecognized option '{a}'", ADM_USAGE, code=20)
        else:
            words.append(a)
    if not words:
        raise SimError(ADM_USAGE, code=20)
    cmd, names = words[0], words[1:]
    if cmd not in ADM_COMMANDS:
        raise SimError(f"drbdadm: Unknown command '{cmd}'", ADM_USAGE, code=20)
    store = Store(path, _float_env(env, "HAFD_DRBD_LOCK_TIMEOUT", LOCK_TIMEOUT))
    adm = Adm(store, node, _float_env(env, "HAFD_DRBD_HANDLER_TIMEOUT", HANDLER_TIMEOUT), argv)
    if cmd in QUERY_UNKNOWN:
        adm.query(cmd, names)
        return "".join(adm.out)
    if not names:
        raise SimError(ADM_USAGE, code=20)
    force = "--force" in flags
    for name in names:
        jobs: Jobs = []
        if cmd == "primary":
            adm.primary(name, force)
        elif cmd == "secondary":
            adm.secondary(name, force)
        elif cmd in ("up", "adjust"):
            jobs = adm.up(name, adjust=cmd == "adjust")
        elif cmd == "down":
            jobs = adm.down(name)
        elif cmd == "connect":
            jobs = adm.connect(name, "--discard-my-data" in flags)
        elif cmd == "disconnect":
            jobs = adm.disconnect(name)
        else:
            adm.resume_io(name)
        run_jobs(store, jobs, adm.handler_timeout)
    return "".join(adm.out)


def iter_views(res: Res) -> Iterator[tuple[str, dict[str, Any]]]:
    for x in res["nodes"]:
        yield x, {y: {"cstate": cstate(res, x, y), "peer_disk": peer_disk(res, x, y)} for y in peers_of(res, x)}


# -- drbd-sim: the test's control CLI --------------------------------------------------------------


def _ctl_parser() -> Any:
    import argparse

    p = argparse.ArgumentParser(prog="drbd-sim", description="Control the drbdadm stand-in's shared state.")
    p.add_argument("--state", default=os.environ.get("HAFD_DRBD_STATE"), help="state file (default $HAFD_DRBD_STATE)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("init", help="a resource: every node up, Secondary, UpToDate, Connected")
    s.add_argument("res")
    s.add_argument("--nodes", required=True, help="comma-separated, node id = position")
    s.add_argument("--device", required=True, help="the block device (its major:minor is what `secondary` checks)")
    s.add_argument("--minor", type=int, default=1)
    s.add_argument("--addresses", default="", help="comma-separated replication addresses (handler env)")
    s.add_argument("--down", action="store_true", help="nodes start down (`drbdadm up` brings each up)")
    for cmd, text in (("disconnect", "replication link lost (fence-peer runs on each Primary)"),
                      ("split-brain", "both nodes StandAlone"), ("resync-finish", "complete a held resync"),
                      ("show", "the resource as JSON")):
        sub.add_parser(cmd, help=text).add_argument("res")
    s = sub.add_parser("connect", help="link restored: reconnect, resync, after-resync-target")
    s.add_argument("res")
    s.add_argument("--hold-resync", type=float, metavar="PCT", help="leave the resync running at PCT percent")
    s.add_argument("--discard-my-data", metavar="NODE", help="NODE becomes the sync target (split-brain recovery)")
    s = sub.add_parser("crash", help="a node dies (no demote, no graceful outdate)")
    s.add_argument("res")
    s.add_argument("node")
    for cmd, what in (("set-disk", "STATE"), ("set-role", "ROLE")):
        s = sub.add_parser(cmd)
        s.add_argument("res")
        s.add_argument("node")
        s.add_argument("value", metavar=what)
    s = sub.add_parser("set-handler", help="NAME: " + "|".join(HANDLERS) + "; no ARGV removes it")
    s.add_argument("res")
    s.add_argument("node")
    s.add_argument("name", choices=HANDLERS)
    s.add_argument("argv", nargs="*")
    s = sub.add_parser("calls", help="handler calls (JSON)")
    s.add_argument("--clear", action="store_true")
    sub.add_parser("log", help="state-changing drbdadm calls (JSON)")
    return p


def control_main(argv: list[str]) -> int:
    ns = _ctl_parser().parse_args(argv)
    if not ns.state:
        print("drbd-sim: no state file (--state FILE or $HAFD_DRBD_STATE)", file=sys.stderr)
        return EXIT_CTL_USAGE
    store = Store(ns.state, _float_env(os.environ, "HAFD_DRBD_LOCK_TIMEOUT", LOCK_TIMEOUT))
    try:
        out = _control(store, ns)
    except SimError as e:
        for line in e.lines:
            print(line, file=sys.stderr)
        return e.code
    if out is not None:
        import json

        print(json.dumps(out, indent=1, sort_keys=True))
    return 0


def _usage(msg: str) -> SimError:
    return SimError(f"drbd-sim: {msg}", code=EXIT_CTL_USAGE)


def _control(store: Store, ns: Any) -> Any:
    cmd = ns.cmd
    with store.locked(exclusive=cmd not in ("show", "log") and not (cmd == "calls" and not ns.clear)):
        state = store.load(create=cmd == "init")
        if cmd in ("calls", "log"):
            out = state.get(cmd) or []
            if cmd == "calls" and ns.clear:
                state["calls"] = []
                store.save(state)
            return out
        if cmd == "init":
            nodes = [n for n in ns.nodes.split(",") if n]
            addrs = [a for a in ns.addresses.split(",") if a]
            if len(nodes) != 2 or len(set(nodes)) != 2:
                raise _usage(f"--nodes needs two distinct names, got {ns.nodes!r}")
            if addrs and len(addrs) != 2:
                raise _usage(f"--addresses needs one address per node, got {ns.addresses!r}")
            if not ns.device.startswith("/"):
                raise _usage(f"--device must be an absolute path, got {ns.device!r}")
            state["resources"][ns.res] = new_resource(nodes, ns.device, ns.minor, addrs, not ns.down)
            store.save(state)
            return []
        res = state["resources"].get(ns.res)
        if res is None:
            raise _usage(f"no resource {ns.res!r} in {store.path} (known: {', '.join(state['resources']) or 'none'})")
        node = getattr(ns, "node", None)
        if node is not None and node not in res["nodes"]:
            raise _usage(f"{ns.res} has no node {node!r} (nodes: {', '.join(res['nodes'])})")
        if cmd == "show":
            return {"resource": ns.res, **res, "view": dict(iter_views(res))}
        jobs = _control_change(ns, res)
        store.save(state)
    return run_jobs(store, jobs, _float_env(os.environ, "HAFD_DRBD_HANDLER_TIMEOUT", HANDLER_TIMEOUT))


def _control_change(ns: Any, res: Res) -> Jobs:
    cmd, name = ns.cmd, ns.res
    before = links(res)
    if cmd == "disconnect":
        res["link"] = False
        return settle(name, res, before)
    if cmd == "connect":
        if ns.discard_my_data is not None:
            if ns.discard_my_data not in res["nodes"]:
                raise _usage(f"{name} has no node {ns.discard_my_data!r}")
            victim = res["node"][ns.discard_my_data]
            victim["diverged"] = False
            if victim["disk"] == "UpToDate":
                victim["disk"] = "Outdated"
        res["link"] = True
        res["hold_resync"] = ns.hold_resync
        for n in res["nodes"]:
            res["node"][n]["standalone"] = False
        return settle(name, res, set())  # every connection (re-)established: resync where needed
    if cmd == "resync-finish":
        if not res.get("resync"):
            raise _usage(f"{name}: no resync in progress")
        return finish_resync(name, res)
    if cmd == "split-brain":
        up = [n for n in res["nodes"] if res["node"][n]["up"]]
        for n in up:
            res["node"][n]["standalone"] = True
            if res["node"][n]["role"] == "Primary":
                res["node"][n]["diverged"] = True
        jobs = settle(name, res, before, quiet=True)
        return jobs + [j for n in up for j in [make_job(name, res, n, "split-brain", peers_of(res, n)[0], "split-brain")] if j]
    if cmd == "crash":
        res["node"][ns.node].update(up=False, role="Secondary", standalone=False, suspended=None)
        return settle(name, res, before)
    if cmd == "set-disk":
        if ns.value not in DISK_STATES:
            raise _usage(f"unknown disk state {ns.value!r} (one of {', '.join(DISK_STATES)})")
        res["node"][ns.node]["disk"] = ns.value
        return []
    if cmd == "set-role":
        if ns.value not in ROLES:
            raise _usage(f"unknown role {ns.value!r} (Primary or Secondary)")
        res["node"][ns.node]["role"] = ns.value
        if ns.value == "Primary" and any(not connected(res, ns.node, y) for y in peers_of(res, ns.node)):
            res["node"][ns.node]["diverged"] = True
        return []
    if cmd == "set-handler":
        argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
        if argv:
            res["node"][ns.node]["handlers"][ns.name] = argv
        else:
            res["node"][ns.node]["handlers"].pop(ns.name, None)
        return []
    raise _usage(f"unknown command {cmd}")
