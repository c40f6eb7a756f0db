"""hafctl: the operator's command line for hafd.

It speaks only the control-socket protocol (`hafd.protocol`) to a running daemon,
plus two offline commands (check-config, keygen).  argparse from the stdlib is
enough for a dozen subcommands; click/typer would add a dependency, RSS and start-up
time to a tool run from scripts and monitoring checks.  The client is a plain
blocking socket (no asyncio import) for the same reason.

Exit codes (stable, for scripts):
  0  ok
  1  the daemon answered with an error, or the configuration is invalid
  2  usage error (bad arguments)
  3  hafd is not running (no socket, or nothing listens on it)
  4  permission denied (connecting to the socket, or refused by the daemon)
  5  protocol error or timeout while talking to the daemon
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import time
from typing import Any, Mapping, NoReturn, Sequence

from hafd import protocol
from hafd.ctl import COMMAND_TIMEOUT, drbd_handler_args
from hafd.paths import DEFAULT_CONFIG_PATH, DEFAULT_SOCKET


DEFAULT_KEY_FILE = "/etc/hafd/authkey"
STATUS_TIMEOUT = 5.0

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_PERMISSION = 4
EXIT_PROTOCOL = 5

EPILOG = """\
exit status:
  0  ok
  1  the daemon answered with an error, or the configuration is invalid
  2  usage error
  3  hafd is not running (no socket, or nothing listens on it)
  4  permission denied (run as root)
  5  protocol error or timeout while talking to hafd
"""


class ClientError(Exception):
    """A failure talking to the daemon, with the exit code it maps to."""

    def __init__(self, exit_code: int, message: str, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.code = code  # the daemon's error code, when it answered with one
        self.details = details

    def detail_lines(self) -> list[str]:
        """The daemon's details, one per line, without repeating what the message says."""
        if self.details is None:
            return []
        if isinstance(self.details, Mapping):
            items = [f"{k}: {_plain(v)}" for k, v in self.details.items()]
        elif isinstance(self.details, list):
            items = [_plain(v) for v in self.details]
        else:
            items = [_plain(self.details)]
        return [f"  {item}" for item in items if item not in self.message]


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, default=str)


def call(socket_path: str, command: str, args: Mapping[str, Any] | None = None, *, timeout: float = 5.0) -> dict:
    """Send one command to hafd and return its result, or raise `ClientError`."""
    try:
        request = protocol.encode_request(command, args)
    except protocol.ProtocolError as exc:
        raise ClientError(EXIT_USAGE, exc.message, exc.code) from None
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except FileNotFoundError:
            raise ClientError(EXIT_NOT_RUNNING, f"hafd is not running (no socket at {socket_path})") from None
        except ConnectionRefusedError:
            raise ClientError(
                EXIT_NOT_RUNNING, f"hafd is not running (nothing listens on {socket_path})"
            ) from None
        except PermissionError:
            raise ClientError(EXIT_PERMISSION, f"permission denied on {socket_path} (run as root)") from None
        except TimeoutError:
            raise ClientError(EXIT_PROTOCOL, f"timed out connecting to {socket_path}") from None
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK or exc.errno == errno.ENOTDIR:
                raise ClientError(EXIT_NOT_RUNNING, f"hafd is not running ({socket_path} is not a socket)") from None
            raise ClientError(EXIT_PROTOCOL, f"cannot connect to {socket_path}: {exc.strerror}") from None
        data = _exchange(sock, request, deadline, socket_path)
    finally:
        sock.close()
    return result_of(data)


def result_of(data: bytes) -> dict:
    """The result in a daemon's answer, or `ClientError` with the exit code its error maps to."""
    try:
        response = protocol.decode_response(data)
    except protocol.ProtocolError as exc:
        raise ClientError(EXIT_PROTOCOL, f"unexpected answer from hafd: {exc.message}") from None
    if response.error is not None:
        err = response.error
        exit_code = EXIT_PERMISSION if err.code == protocol.ErrorCode.PERMISSION_DENIED else EXIT_ERROR
        raise ClientError(exit_code, err.message, err.code, err.details)
    return dict(response.result or {})


def _exchange(sock: socket.socket, request: bytes, deadline: float, path: str) -> bytes:
    try:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early (refused, too long): its answer is still readable
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if chunk.endswith(b"\n"):
                break
            if size > protocol.MAX_RESPONSE:
                raise ClientError(EXIT_PROTOCOL, f"answer from hafd is too long (over {protocol.MAX_RESPONSE} bytes)")
    except TimeoutError:
        raise ClientError(EXIT_PROTOCOL, f"timed out waiting for hafd on {path}") from None
    except ConnectionResetError:
        if not chunks:
            raise ClientError(EXIT_PROTOCOL, f"hafd closed the connection on {path} without answering") from None
    except OSError as exc:
        raise ClientError(EXIT_PROTOCOL, f"error talking to hafd on {path}: {exc.strerror or exc}") from None
    if not chunks:
        raise ClientError(EXIT_PROTOCOL, f"hafd closed the connection on {path} without answering")
    return b"".join(chunks)


# --- configuration ------------------------------------------------------------------


def _load_config(path: str) -> Any:
    from hafd.core.configload import load_config  # imported late: YAML only when needed

    return load_config(path)


def _from_config(path: str, attr: str, default: str) -> tuple[str, str | None]:
    """A cluster setting from the config file, or `default` and why it was not read."""
    try:
        cfg = _load_config(path)
        return str(getattr(cfg.cluster, attr)), None
    except Exception as exc:  # unreadable or invalid: an edit being reloaded is often broken
        raw = _raw_cluster_value(path, attr)
        if raw is not None:
            return raw, None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if path not in first:
            first = f"{path}: {first}"
        return default, f"{first}; used the default {default}"


def _raw_cluster_value(path: str, attr: str) -> str | None:
    """`cluster.<attr>` read straight from the YAML, for a file that does not validate:
    `hafctl reload` of a broken edit must still reach the daemon to be told what is wrong."""
    try:
        import yaml

        with open(path) as f:
            doc = yaml.safe_load(f)
        value = doc["cluster"][attr]
        return value if isinstance(value, str) and value.startswith("/") else None
    except Exception:  # noqa: BLE001 - any failure means: fall back to the default
        return None


# --- commands -------------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    raise ClientError(code, message)


def cmd_daemon(ns: argparse.Namespace) -> int:
    socket_path, note = (ns.socket, None) if ns.socket else _from_config(ns.config, "control_socket", DEFAULT_SOCKET)
    args: dict[str, str] = {}
    for key in protocol.COMMANDS[ns.command]:
        value = getattr(ns, key, None)
        if value is not None:
            args[key] = value
    timeout = ns.timeout or (STATUS_TIMEOUT if ns.command == "status" else COMMAND_TIMEOUT)
    try:
        result = call(socket_path, ns.command, args, timeout=timeout)
    except ClientError as exc:
        if note and exc.exit_code == EXIT_NOT_RUNNING:
            exc.message += f" [{note}]"
        raise
    if ns.command == "history":
        from hafd.render import render_history

        events = result.get("events") if isinstance(result.get("events"), list) else []
        print(json.dumps(events, indent=2) if ns.json else render_history(events, time.time()))
        return EXIT_OK
    if ns.command == "status":
        if ns.json:
            print(json.dumps(result, indent=2))
        else:
            from hafd.render import render_status

            print(render_status(result, time.time()))
    else:
        print_result(ns.command, result)
    return EXIT_OK


def print_result(command: str, result: Mapping[str, Any]) -> None:
    """An operator command's answer: its message, else every field."""
    if isinstance(result.get("message"), str):
        print(result["message"])
    else:
        print(f"{command}: ok")
        for key, value in result.items():
            print(f"  {key}: {_plain(value)}")


def cmd_drbd_handler(ns: argparse.Namespace) -> int:
    """DRBD's fence-peer / after-resync-target handler: the exit code is the answer.

    Any failure to reach hafd exits 1, which DRBD treats as "helper broken": it
    aborts the state change and keeps I/O frozen — the safe answer when we cannot
    tell whether the peer still writes.
    """
    if ns.socket:
        socket_path = ns.socket
    elif ns.config == DEFAULT_CONFIG_PATH and os.path.exists(DEFAULT_SOCKET):
        # DRBD waits (I/O frozen) while this runs: skip parsing the whole config when
        # the daemon listens where it does by default.
        socket_path = DEFAULT_SOCKET
    else:
        socket_path, _ = _from_config(ns.config, "control_socket", DEFAULT_SOCKET)
    args = drbd_handler_args(os.environ)
    if getattr(ns, "resource", None):
        args["resource"] = ns.resource
    if getattr(ns, "peer", None) and ns.command == "fence-peer":
        args["peer"] = ns.peer
    if ns.command == "unfence-peer":
        args.pop("peer", None)
    try:
        result = call(socket_path, ns.command, args, timeout=ns.timeout or COMMAND_TIMEOUT)
    except ClientError as exc:
        print(f"hafctl: {ns.command}: {exc.message}", file=sys.stderr)
        return 1
    print(result.get("message", f"{ns.command}: ok"))
    code = result.get("exit_code", 0)
    return code if isinstance(code, int) and 0 <= code <= 255 else 1


def cmd_check_config(ns: argparse.Namespace) -> int:
    path = ns.path or ns.config
    try:
        from hafd.core.configload import ConfigError
    except ImportError as exc:
        _fail(f"check-config is unavailable in this build: {exc}", EXIT_ERROR)
    try:
        cfg = _load_config(path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        issues = getattr(exc, "issues", None) or str(exc).splitlines()
        _fail(f"{path}: invalid ({len(issues)} error{'s' if len(issues) != 1 else ''})", EXIT_ERROR)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_ERROR)
    print(f"{path}: OK")
    for warning in getattr(cfg, "warnings", ()) or ():
        print(f"warning: {warning}")
    return EXIT_OK


def write_key(path: str, *, force: bool = False) -> None:
    """Write a new random key (64 hex chars + newline), mode 0600, atomically.

    The key is complete on disk before it gets its name (temp file, fsync, then link
    or rename), so a crash never leaves a short key; without `force` os.link refuses
    an existing file even against a race.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        _fail(f"directory {directory} does not exist (create it first)", EXIT_ERROR)
    if os.path.lexists(path) and not force:
        _fail(f"{path} already exists; not overwriting a key (use --force to replace it)", EXIT_ERROR)
    import secrets  # only keygen needs it; the DRBD handlers must start fast

    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        denied = exc.errno in (errno.EACCES, errno.EPERM)
        _fail(f"cannot create a file in {directory}: {exc.strerror}", EXIT_PERMISSION if denied else EXIT_ERROR)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                _fail(f"{path} already exists; not overwriting a key (use --force to replace it)", EXIT_ERROR)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def cmd_keygen(ns: argparse.Namespace) -> int:
    path = ns.path or _from_config(ns.config, "key_file", DEFAULT_KEY_FILE)[0]
    write_key(path, force=ns.force)
    print(f"wrote a new key to {path} (mode 0600); copy it to every node of the cluster")
    return EXIT_OK


def cmd_import_crm(ns: argparse.Namespace) -> int:
    """crm commands (+ corosync.conf) -> hafd.yaml on stdout; what is not translated goes to stderr.

    Exit 0 even with untranslated parts (they are reported, and listed in the output);
    --strict exits 1 for them, for scripts that must not proceed with a partial import.
    """
    from hafd.core.configload import ConfigError, parse_config
    from hafd.migrate import import_crm

    def read(path: str) -> str:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"import-crm: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", EXIT_ERROR)

    crm_text = read(ns.file)
    corosync = ns.corosync or "/etc/corosync/corosync.conf"
    cs_text = read(corosync) if ns.corosync or os.path.exists(corosync) else None
    result = import_crm(crm_text, ns.file, cs_text, corosync)
    if cs_text is None:
        print(f"{corosync}: not found: node names and links are placeholders (use --corosync PATH)", file=sys.stderr)
    for report in result.reports:
        print(report, file=sys.stderr)
    try:
        parse_config(result.yaml_text, "import-crm output")
    except ConfigError as exc:  # a translator bug: show it rather than hand over a broken file
        print(result.yaml_text, end="")
        _fail(f"import-crm: the translated configuration does not validate:\n{exc}", EXIT_ERROR)
    print(result.yaml_text, end="")
    if result.lost:
        print(f"hafctl: import-crm: {len(result.lost)} item(s) not translated (listed above and at the top of the "
              "output)", file=sys.stderr)
    return EXIT_ERROR if ns.strict and (result.lost or cs_text is None) else EXIT_OK


def cmd_simulate(ns: argparse.Namespace) -> int:
    """What the cluster would do after EVENTs, and why: from the running daemon's state (read with
    `status`; nothing is changed) or, with `simulate --config PATH`, from a cold start of PATH."""
    from hafd.core.configload import ConfigError, load_config
    from hafd.simulate import SimulateError, parse_events, simulate

    path = ns.sim_config or ns.config
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        _fail(f"simulate: {exc}", EXIT_ERROR)
    try:
        events = parse_events(ns.events, cfg)
    except SimulateError as exc:
        raise ClientError(EXIT_USAGE, f"simulate: {exc}") from None
    status = None
    if ns.sim_config is None:
        try:
            status = call(ns.socket or cfg.cluster.control_socket, "status", {}, timeout=ns.timeout or STATUS_TIMEOUT)
        except ClientError as exc:
            if exc.exit_code == EXIT_NOT_RUNNING:
                exc.message += " (to simulate from a cold start instead: hafctl simulate --config PATH EVENT...)"
            raise
    try:
        sim = simulate(cfg, events, status)
    except SimulateError as exc:
        _fail(f"simulate: {exc}", EXIT_ERROR)
    print(json.dumps(sim.as_json(), indent=2) if ns.json else sim.render())
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------


def _count(value: str) -> str:
    """-n N: a whole number, passed on as the protocol's string argument."""
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return str(int(value))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hafctl",
        description="Control and inspect hafd, the failover daemon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG_PATH, metavar="PATH", help="hafd.yaml (default: %(default)s)")
    parser.add_argument(
        "--socket", metavar="PATH", help=f"control socket (default: cluster.control_socket, else {DEFAULT_SOCKET})"
    )
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait for hafd")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("status", help="what runs where, and why")
    p.add_argument("--json", action="store_true", help="the daemon's status as JSON")
    p.set_defaults(func=cmd_daemon)
    for name, verb in (("standby", "stop running resources on"), ("unstandby", "allow resources again on")):
        p = sub.add_parser(name, help=f"{verb} a node (default: this node)")
        p.add_argument("node", nargs="?", help="node name (default: this node)")
        p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("cleanup", help="forget failure counts and errors (of one resource, or all)")
    p.add_argument("resource", nargs="?", help="resource name (default: all)")
    p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("reload", help="re-read the configuration file")
    p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("failover", help="move the service to the other node")
    p.add_argument("--to", metavar="NODE", help="target node (default: the peer)")
    p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("history", help="past transitions: when, from -> to, why, who decided, how long each phase took")
    p.add_argument("--json", action="store_true", help="the events as JSON")
    p.add_argument("-n", dest="limit", metavar="N", type=_count, help="show the newest N events (default 50)")
    p.set_defaults(func=cmd_daemon)
    p = sub.add_parser("fence-peer", help="DRBD fence-peer handler (exit 4: peer outdated, 7: fenced, 5: unreachable)")
    p.add_argument("--resource", metavar="RES", help="DRBD resource (default: $DRBD_RESOURCE)")
    p.add_argument("--peer", metavar="NODE", help="peer node (default: from $DRBD_PEER_NODE_ID)")
    p.set_defaults(func=cmd_drbd_handler)
    p = sub.add_parser("unfence-peer", help="DRBD after-resync-target handler: this node may take over again")
    p.add_argument("--resource", metavar="RES", help="DRBD resource (default: $DRBD_RESOURCE)")
    p.set_defaults(func=cmd_drbd_handler)
    p = sub.add_parser("check-config", help="validate a configuration file offline")
    p.add_argument("path", nargs="?", metavar="PATH", help="file to check (default: --config)")
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser("keygen", help="write a new cluster key (mode 0600)")
    p.add_argument("path", nargs="?", metavar="PATH", help=f"key file (default: cluster.key_file, else {DEFAULT_KEY_FILE})")
    p.add_argument("--force", action="store_true", help="replace an existing key")
    p.set_defaults(func=cmd_keygen)
    p = sub.add_parser("import-crm", help="translate Pacemaker crm commands into hafd.yaml (on stdout)")
    p.add_argument("file", metavar="FILE", help="crm shell commands, or `crm configure show` output")
    p.add_argument("--corosync", metavar="PATH", help="corosync.conf (default: /etc/corosync/corosync.conf if present)")
    p.add_argument("--strict", action="store_true", help="exit 1 if anything could not be translated")
    p.set_defaults(func=cmd_import_crm)
    p = sub.add_parser(
        "simulate", help="what the cluster would do after EVENTs, and why (changes nothing)",
        description="Replay EVENTs through hafd's own decision code, from the running daemon's state (read with "
        "`status`) or, with --config, from a cold start of that file, and say what would happen, step by step.",
        epilog="events (each applied once the cluster settled after the previous one):\n"
        "  node-lost NODE                   the machine dies: heartbeats stop, nothing runs there\n"
        "  node-back NODE                   it boots again\n"
        "  resource-failed RES [NODE] [xN]  the next N monitors of RES on NODE (default: where it runs) fail\n"
        "  link-down NODE ADDRESS           NODE's link ADDRESS carries nothing (link-up NODE ADDRESS: again)\n"
        "  standby NODE | unstandby NODE\n"
        "  failover [NODE]                  hafctl failover [--to NODE]\n"
        "  fence-fails NODE                 fencing NODE fails from now on\n"
        "  tiebreaker-lost NODE             NODE cannot reach the tiebreaker (tiebreaker-back NODE: again)\n"
        "example: hafctl simulate --config /etc/hafd/hafd.yaml node-lost nodeone",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("events", nargs="+", metavar="EVENT", help="event words, e.g. node-lost nodeone resource-failed dhcpd x4")
    p.add_argument("--config", dest="sim_config", metavar="PATH",
                   help="simulate from a cold start of this configuration instead of the running daemon's state")
    p.add_argument("--json", action="store_true", help="the steps and the resulting states as JSON")
    p.set_defaults(func=cmd_simulate)
    return parser


def report(command: str, exc: ClientError) -> int:
    """Say what went wrong on stderr; the exit code."""
    if exc.code and exc.exit_code == EXIT_ERROR:
        print(f"hafctl: {command}: {exc.code}: {exc.message}", file=sys.stderr)
    else:
        print(f"hafctl: {exc.message}", file=sys.stderr)
    for line in exc.detail_lines():
        print(line, file=sys.stderr)
    return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return int(ns.func(ns))
    except ClientError as exc:
        if exc.exit_code == EXIT_USAGE:
            parser.error(exc.message)
        return report(ns.command, exc)
    except KeyboardInterrupt:
        print("hafctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `hafctl status | head`
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
