"""The Prometheus endpoint (hafd.yaml `metrics: {listen: "127.0.0.1:9469"}`, off by default).

Imported only when metrics are enabled: prometheus_client costs a few MB of RSS and
~70 ms of start-up that a node without monitoring should not pay.

Served by a small asyncio HTTP handler on the daemon's own loop, not by
prometheus_client's `start_http_server` thread: every value is read from the
daemon's state on the loop thread at scrape time (the status dict, the same facts
`hafctl status` shows), so a scrape sees one consistent snapshot and needs no locks
against the loop mutating that state.  Building the text costs about a millisecond;
a slow or stuck scraper costs nothing, since reads and writes are awaited with a
timeout and connections are bounded.

Heartbeat latency is not exported: heartbeats carry the sender's monotonic clock,
which is not comparable across hosts, and hafd does not measure round trips.  The
nearest fact, how long ago each link was last heard, is exported instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator, Mapping

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = structlog.get_logger(__name__)

ROLES = ("starting", "probing", "standby", "stopping", "active", "failed")
RESOURCE_STATES = ("unknown", "stopped", "starting", "started", "stopping", "failed")
# Operations run from milliseconds (monitor) to a DRBD promote or fsck of tens of seconds.
OP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MAX_CLIENTS = 8
IO_TIMEOUT = 5.0


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _StatusCollector:
    """Turns the daemon's status dict into metric families at scrape time."""

    def __init__(self, status: Callable[[], Mapping[str, Any]], extra: Callable[[], Mapping[str, Any]]) -> None:
        self.status = status
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        s = self.status()
        x = self.extra()
        info = GaugeMetricFamily("hafd_info", "hafd version and this node", labels=["version", "node", "cluster"])
        info.add_metric([str(s.get("version")), str(s.get("node")), str(s.get("cluster"))], 1)
        yield info
        role = GaugeMetricFamily("hafd_role", "1 for this node's current role", labels=["role"])
        current = str(s.get("role"))
        for r in dict.fromkeys((*ROLES, current)):
            role.add_metric([r], 1 if r == current else 0)
        yield role
        yield GaugeMetricFamily("hafd_split_brain", "1 while a split brain is recorded (until `hafctl cleanup`)",
                                value=1 if s.get("split_brain") else 0)

        peer_up = GaugeMetricFamily("hafd_peer_up", "1 if the peer is alive (heard on at least one link)",
                                    labels=["peer"])
        link_up = GaugeMetricFamily("hafd_link_up", "1 if heartbeats arrive on this link", labels=["peer", "link"])
        loss = GaugeMetricFamily("hafd_link_heartbeat_loss_ratio", "fraction of heartbeats lost in the recent window",
                                 labels=["peer", "link"])
        heard = GaugeMetricFamily("hafd_link_last_heard_seconds", "seconds since the last valid heartbeat on the link",
                                  labels=["peer", "link"])
        for name, n in (s.get("nodes") or {}).items():
            if not isinstance(n, Mapping) or n.get("local"):
                continue
            peer_up.add_metric([name], 1 if n.get("state") in ("online", "standby") else 0)
            for addr, ln in (n.get("links") or {}).items():
                if not isinstance(ln, Mapping):
                    continue
                link_up.add_metric([name, addr], 1 if ln.get("state") == "up" else 0)
                if (v := _num(ln.get("loss"))) is not None:
                    loss.add_metric([name, addr], v)
                if (v := _num(ln.get("last_seen_ago"))) is not None:
                    heard.add_metric([name, addr], v)
        yield from (peer_up, link_up, loss, heard)

        state = GaugeMetricFamily("hafd_resource_state", "1 for the resource's current state",
                                  labels=["resource", "state"])
        fails = GaugeMetricFamily("hafd_resource_failures", "failures counted toward migration_threshold",
                                  labels=["resource"])
        for name, r in (s.get("resources") or {}).items():
            if not isinstance(r, Mapping):
                continue
            cur = str(r.get("state"))
            for st in dict.fromkeys((*RESOURCE_STATES, cur)):
                state.add_metric([name, st], 1 if st == cur else 0)
            if (v := _num(r.get("failures"))) is not None:
                fails.add_metric([name], v)
        yield from (state, fails)

        rejected = CounterMetricFamily("hafd_rejected_packets", "heartbeat packets rejected, by reason",
                                       labels=["reason"])
        for reason, count in (s.get("rejected_packets") or {}).items():
            rejected.add_metric([reason], count)
        yield rejected

        yield CounterMetricFamily("hafd_failovers", "takeovers by this node (role became active) since hafd started",
                                  value=x.get("failovers", 0))
        last = x.get("last_failover_seconds")
        if last is not None:
            yield GaugeMetricFamily("hafd_last_failover_duration_seconds",
                                    "from the trigger (e.g. peer lost) to this node active, for the last takeover",
                                    value=last)
        hooks = x.get("hooks") or {}
        yield CounterMetricFamily("hafd_hook_runs", "event hook runs", value=hooks.get("run", 0))
        yield CounterMetricFamily("hafd_hook_failures", "event hook runs that failed or timed out",
                                  value=hooks.get("failed", 0))


class Metrics:
    """The registry, the operation histogram the daemon feeds, and the HTTP endpoint."""

    def __init__(self, host: str, port: int, status: Callable[[], Mapping[str, Any]],
                 extra: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_StatusCollector(status, extra or dict))  # type: ignore[arg-type]
        self.op_duration = Histogram("hafd_operation_duration_seconds", "resource operation durations",
                                     ["resource", "op"], buckets=OP_BUCKETS, registry=self.registry)
        self.ops = Counter("hafd_operations", "resource operations by outcome", ["resource", "op", "outcome"],
                           registry=self.registry)
        self._server: asyncio.Server | None = None
        self._clients = asyncio.Semaphore(MAX_CLIENTS)

    def observe_operation(self, resource: str, op: str, outcome: str, duration: float) -> None:
        self.op_duration.labels(resource, op).observe(duration)
        self.ops.labels(resource, op, outcome).inc()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        log.info("metrics_listening", address=f"{self.host}:{self.port}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients.locked():
            writer.close()
            return
        async with self._clients:
            try:
                async with asyncio.timeout(IO_TIMEOUT):
                    request = await reader.readuntil(b"\r\n\r\n")
                    method, _, rest = request.partition(b" ")
                    path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
                    if method not in (b"GET", b"HEAD"):
                        await self._reply(writer, 405, b"text/plain", b"only GET\n")
                    elif path not in (b"/metrics", b"/"):
                        await self._reply(writer, 404, b"text/plain", b"see /metrics\n")
                    else:
                        body = generate_latest(self.registry)
                        await self._reply(writer, 200, CONTENT_TYPE_LATEST.encode(), b"" if method == b"HEAD" else body)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                pass
            except Exception:  # noqa: BLE001 - a scrape must never hurt the daemon
                log.exception("metrics_scrape_failed")
            finally:
                writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, code: int, ctype: bytes, body: bytes) -> None:
        reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed"}[code]
        head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
            code, reason, ctype, len(body))
        writer.write(head + body)
        await writer.drain()
