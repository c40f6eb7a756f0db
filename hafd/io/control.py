"""The daemon's end of the control socket: a Unix stream socket speaking `hafd.protocol`.

It is the only way into a running hafd, so it is defensive: only allowed uids (root)
may issue commands, checked with SO_PEERCRED on every connection (the file mode is
a second fence, not the only one); each connection gets one bounded, timed read; any
bad input gets a structured error; a crashing handler becomes an `internal` error
and the server keeps serving.  It holds no policy: the daemon passes a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import struct
from typing import Any, Awaitable, Callable, Mapping

import structlog

from hafd.protocol import (
    MAX_REQUEST,
    ErrorCode,
    ProtocolError,
    Response,
    decode_request,
    encode_response,
)

log = structlog.get_logger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]

_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = 32  # more than any operator needs; bounds what a runaway script can hold open


class ControlSocketError(RuntimeError):
    """The socket cannot be set up (another hafd answers, the path is not a socket...)."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel saw it at connect()."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def _socket_answers(path: str) -> bool:
    """True if something accepts connections on `path` (a live daemon); False if stale."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno == errno.EAGAIN:  # backlog full: alive but busy
                return True
            raise
    return True


class ControlServer:
    def __init__(
        self,
        path: str,
        handler: Handler,
        *,
        allowed_uids: frozenset[int] = frozenset({0}),
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.path = path
        self._handler = handler
        self._allowed_uids = allowed_uids
        self._read_timeout = read_timeout
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._inode: tuple[int, int] | None = None

    async def start(self) -> None:
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            # /run/hafd: root-only; peers that may talk to us are root anyway.
            os.makedirs(parent, mode=0o750, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # Linux gives the bound file the socket inode's mode (minus umask): fchmod
            # before bind closes the window in which the file would be group/world writable.
            os.fchmod(sock.fileno(), 0o600)
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._on_client, sock=sock, limit=MAX_REQUEST, backlog=MAX_CONNECTIONS
            )
        except BaseException:
            sock.close()
            self._unlink_own()
            raise
        log.info("control_socket_listening", path=self.path)

    async def close(self) -> None:
        """Stop accepting, cancel connections in flight, and remove our socket file."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._unlink_own()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return len(self._tasks)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{self.path} exists and is not a socket; refusing to remove it")
        if _socket_answers(self.path):
            raise ControlSocketError(f"another hafd is running (socket {self.path} answers)")
        log.info("control_socket_stale_removed", path=self.path)
        os.unlink(self.path)

    def _unlink_own(self) -> None:
        """Remove the socket file only if it is still ours (a newer daemon may have replaced it)."""
        if self._inode is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        self._inode = None

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                response: Response | None = Response.failure(
                    ErrorCode.BUSY, f"too many control connections (more than {MAX_CONNECTIONS})"
                )
            else:
                response = await self._serve(reader, writer)
            if response is not None:
                writer.write(self._encode(response))
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-answer, or a write timed out
            log.debug("control_connection_error", error=repr(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Response | None:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, gid = peer_credentials(sock)
        except (OSError, struct.error) as exc:
            log.warning("control_peer_credentials_failed", error=str(exc))
            return Response.failure(ErrorCode.PERMISSION_DENIED, "cannot identify the connecting process")
        try:
            line = await asyncio.wait_for(reader.readline(), self._read_timeout)
        except ValueError:  # the limit: readline() cleared its buffer
            return Response.failure(ErrorCode.BAD_REQUEST, f"request is too long (at most {MAX_REQUEST} bytes)")
        except TimeoutError:
            log.info("control_read_timeout", pid=pid, uid=uid)
            return Response.failure(ErrorCode.BAD_REQUEST, f"no complete request within {self._read_timeout:g}s")
        if not line:
            return None  # connected and left without a word (a liveness probe)
        if uid not in self._allowed_uids:
            log.warning("control_permission_denied", pid=pid, uid=uid, gid=gid)
            return Response.failure(
                ErrorCode.PERMISSION_DENIED, f"uid {uid} may not use the hafd control socket (root only)"
            )
        try:
            request = decode_request(line)
        except ProtocolError as exc:
            log.info("control_bad_request", pid=pid, uid=uid, code=exc.code, error=exc.message)
            return Response.from_error(exc)
        # Status polls (monitoring, watch) would drown the decisions; changes are logged.
        (log.debug if request.command == "status" else log.info)(
            "control_request", command=request.command, args=dict(request.args), pid=pid, uid=uid
        )
        try:
            result = await self._handler(request.command, dict(request.args))
        except ProtocolError as exc:
            log.info("control_request_failed", command=request.command, code=exc.code, error=exc.message)
            return Response.from_error(exc)
        except Exception as exc:
            log.exception("control_handler_crashed", command=request.command)
            return Response.failure(ErrorCode.INTERNAL, f"{request.command} failed: {type(exc).__name__}: {exc}")
        if not isinstance(result, Mapping):
            log.error("control_handler_bad_result", command=request.command, type=type(result).__name__)
            return Response.failure(ErrorCode.INTERNAL, f"{request.command} returned {type(result).__name__}")
        return Response.success(result)

    @staticmethod
    def _encode(response: Response) -> bytes:
        try:
            return encode_response(response)
        except ProtocolError as exc:
            log.error("control_response_unserialisable", error=exc.message)
            return encode_response(Response.from_error(exc))
