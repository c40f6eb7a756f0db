"""The `drbd` resource: promote (start) and demote (stop) one DRBD 9 resource.

hafd does not bring DRBD up or down (drbd.service / `drbdadm up` does); this agent only
moves the local role between Secondary and Primary, as Pacemaker's ocf:linbit:drbd
promote/demote did, and reads `drbdadm status RES` for everything else.

Safety over convenience: promote refuses a local disk that is not UpToDate (every
volume), because promoting Outdated or Inconsistent data is how a failover silently
rolls the service back in time.  `force: true` in the config overrides that, and then
`drbdadm primary --force` is used (DRBD itself would refuse otherwise); an UpToDate disk
is promoted without --force even then.

monitor:
    Primary, every volume UpToDate      RUNNING
    Secondary                           STOPPED (whatever the disk: that is the standby)
    Primary with any other local disk   FAILED  (Diskless, Failed, Inconsistent, Outdated...)
    any other role                      FAILED
A peer connection in StandAlone is reported as `split_brain: True` in `extra` (DRBD
leaves a connection StandAlone after an unresolved split brain, or after an operator's
`drbdadm disconnect`); the policy, not the agent, decides what to do about it.

Start reads the status once (to refuse a disk that is not UpToDate), then promotes with
one drbdadm call; stop is one `drbdadm secondary`.  The monitor, not a second status
read, confirms the result later: every call here is time the service is down.

Errors: drbdadm's exit code and full stderr travel in the AgentError; the message is
drbdadm's own first line, e.g. "drbdadm primary r0 failed (exit 17): r0: State change
failed: (-2) Need access to UpToDate data".  A resource that is not up (`r0: No such
resource`, exit 10) makes monitor and start raise, but stop succeed: a resource that is
not up cannot be Primary here, which is all stop promises.
"""

from __future__ import annotations

import structlog

from hafd.agents.base import Agent, AgentContext, AgentError, Health, Status
from hafd.agents.command import run_program
from hafd.core.config import DrbdParams, Resource
from hafd.core.drbdstatus import DrbdStatus, DrbdStatusError, Peer, Role, parse_resource

log = structlog.get_logger(__name__)

EXIT_NO_SUCH_RESOURCE = 10


def _peer_summary(p: Peer) -> str:
    s = f"peer {p.name}:{p.connection.value}/{p.peer_disk.value}"
    if p.volumes and p.replication.value not in ("Established", "Off"):
        s += f" {p.replication.value}"
        if p.done is not None:
            s += f" {p.done:.2f}%"
    return s


def describe(st: DrbdStatus) -> str:
    """One line for `hafctl status`: "role:Primary disk:UpToDate peer nodetwo:Connected/UpToDate"."""
    parts = [f"role:{st.role_raw or st.role.value}", f"disk:{_disk_text(st)}"]
    if not st.quorum:
        parts.append("quorum:lost")
    if st.suspended and st.suspended != "no":
        parts.append(f"suspended:{st.suspended}")
    parts += [_peer_summary(p) for p in st.peers]
    if st.split_brain:
        parts.append("(StandAlone: split brain or disconnected)")
    return " ".join(parts)


def _disk_text(st: DrbdStatus) -> str:
    raws = [v.disk_raw or v.disk.value for v in st.volumes]
    if len(set(raws)) <= 1:
        return raws[0] if raws else "none"
    return ",".join(f"{v.number}={r}" for v, r in zip(st.volumes, raws))


def status_extra(st: DrbdStatus) -> dict[str, object]:
    """Machine-readable facts for `status --json` and the split-brain rule (plain JSON types)."""
    return {
        "role": st.role.value,
        "disk": st.disk.value,
        "volumes": [{"volume": v.number, "disk": v.disk.value, "open": v.open, "quorum": v.quorum} for v in st.volumes],
        "peers": [
            {
                "name": p.name,
                "connection": p.connection.value,
                "role": p.role.value if p.role else None,
                "peer_disk": p.peer_disk.value,
                "replication": p.replication.value,
                "done": p.done,
            }
            for p in st.peers
        ],
        "quorum": st.quorum,
        "split_brain": st.split_brain,
    }


class DrbdAgent(Agent):
    def __init__(self, resource: Resource, ctx: AgentContext) -> None:
        super().__init__(resource, ctx)
        if not isinstance(resource.params, DrbdParams):
            raise TypeError(f"resource {resource.name}: drbd agent needs DrbdParams, got {resource.params!r}")
        self.params: DrbdParams = resource.params

    @property
    def res(self) -> str:
        return self.params.resource

    def _drbdadm(self, *args: str) -> list[str]:
        return [self.ctx.programs.drbdadm, *args]

    async def status(self) -> DrbdStatus:
        """`drbdadm status RES`, parsed; AgentError if drbdadm fails or prints something unreadable."""
        result = await run_program(self._drbdadm("status", self.res), self.resource.timeout)
        try:
            return parse_resource(result.stdout, self.res)
        except DrbdStatusError as e:
            raise AgentError(
                f"cannot read drbdadm status {self.res}: {e}", exit_code=result.returncode, stderr=result.stderr, argv=result.argv
            ) from None

    async def start(self) -> None:
        st = await self.status()
        if st.role is Role.PRIMARY:
            log.info("drbd_already_primary", resource=self.name, drbd=self.res)
            return
        if not st.up_to_date and not self.params.force:
            raise AgentError(
                f"refusing to promote {self.res}: local disk is {_disk_text(st)} (not UpToDate); "
                "set force: true to override"
            )
        # --force only where it is needed: on an UpToDate disk it would also skip the
        # fence-peer handshake and so could force a split brain the operator never asked for.
        forced = self.params.force and not st.up_to_date
        args = ("primary", "--force", self.res) if forced else ("primary", self.res)
        # Exit 0 is DRBD's word that the state change happened (drbd.md): no status read
        # after it, because on the failover path every drbdadm call is time the service is down.
        await run_program(self._drbdadm(*args), self.resource.timeout)
        log.info("drbd_promoted", resource=self.name, drbd=self.res, forced=forced, was=describe(st))

    async def stop(self) -> None:
        # No status read first: `drbdadm secondary` on a Secondary is a successful no-op,
        # and a switchover waits for every call made here.
        try:
            await run_program(self._drbdadm("secondary", self.res), self.resource.timeout)
        except AgentError as e:
            if e.exit_code == EXIT_NO_SUCH_RESOURCE:
                log.warning("drbd_not_up_on_stop", resource=self.name, drbd=self.res, error=e.message)
                return
            raise
        log.info("drbd_demoted", resource=self.name, drbd=self.res)

    async def monitor(self) -> Status:
        st = await self.status()
        if st.role is Role.SECONDARY:
            health = Health.STOPPED
        elif st.role is Role.PRIMARY and st.up_to_date:
            health = Health.RUNNING
        else:
            health = Health.FAILED
        if st.split_brain:
            log.warning("drbd_standalone", resource=self.name, drbd=self.res, detail=describe(st))
        return Status(health, describe(st), status_extra(st))

