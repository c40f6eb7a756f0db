"""One node's view of the cluster, and what it must do about it. Pure.

This is where membership (who is alive), the election (who should be active) and
the safety rules meet: a node takes the role only when the election names it, no
visible peer is active, starting or stopping, and every lost peer that may still
run resources has been fenced (when fencing is configured).  It steps down when
the election names another node or loses a split brain, and it keeps adopted
resources across its own restart only if no peer took over meanwhile.

Inputs are plain events with the time they happened; outputs are `Act`s the
daemon carries out (set the engine's target, run the fence command, send a
heartbeat now, re-announce the VIP, persist state, log a decision).  The same
class runs in the daemon, in `hafctl simulate` and in the deterministic
simulation test, so what is tested is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hafd.core.codec import Command, Heartbeat, Message, Role
from hafd.core.election import HOLDING, Decision, ElectionInput, NodeState, decide, may_start, visible_nodes
from hafd.core.membership import EventKind, Membership, MembershipEvent

# How long a node waits after a failed fence before trying again.
FENCE_RETRY_DELAY = 1.0
# A switchover request is forgotten after this long if it has not happened.
SWITCHOVER_TIMEOUT = 120.0


@dataclass(frozen=True)
class Settings:
    local: str
    priorities: dict[str, int]
    links: dict[str, tuple[str, ...]]
    interval: float
    deadtime: float
    failback: bool
    config_hash: bytes
    fencing: bool = False
    fence_halt_on_failure: bool = False
    tiebreaker: bool = False
    startup_wait: float = 2.0
    restart_grace: float = 10.0


# -- actions ---------------------------------------------------------------------


@dataclass(frozen=True)
class SetTarget:
    active: bool
    reason: str


@dataclass(frozen=True)
class Fence:
    peer: str
    reason: str


@dataclass(frozen=True)
class SendNow:
    """Send a heartbeat at once: the role changed and peers should not wait an interval."""


@dataclass(frozen=True)
class SendCommand:
    command: Command


@dataclass(frozen=True)
class Reannounce:
    reason: str


@dataclass(frozen=True)
class CheckTiebreaker:
    """Ask the tiebreaker now, not at the next interval: a takeover waits for it."""

    reason: str


@dataclass(frozen=True)
class Persist:
    state: dict[str, Any]


@dataclass(frozen=True)
class Note:
    """A decision or event worth a log line (and, for transitions, a history entry)."""

    event: str
    reason: str
    level: str = "info"
    fields: dict[str, Any] = field(default_factory=dict)


Act = SetTarget | Fence | SendNow | SendCommand | Reannounce | Persist | Note | CheckTiebreaker


# -- the node ----------------------------------------------------------------------


@dataclass
class _Fencing:
    state: str = "needed"  # needed | running | done | failed | halted
    detail: str = ""
    retry_at: float = 0.0


class ClusterCore:
    def __init__(
        self,
        settings: Settings,
        now: float,
        *,
        epoch: int = 0,
        was_active: bool = False,
        standby: bool = False,
        outdated: str | None = None,
    ) -> None:
        s = settings
        self.s = s
        self.membership = Membership(
            s.local,
            {n: list(a) for n, a in s.links.items() if n != s.local},
            s.interval,
            s.deadtime,
            restart_grace=s.restart_grace,
        )
        self.epoch = epoch
        self.was_active = was_active
        self.standby = standby
        # Set by a peer's DRBD fence-peer handler: our replica may be stale, so we must
        # not take over until DRBD has resynced us (after-resync-target clears it).
        self.outdated = outdated
        self.startup_until = now + s.startup_wait
        self.startup_over_for_good = False
        self._now = now
        self.decided = False  # no decision yet: adopted resources are neither kept nor stopped
        self.target_active = False
        self.engine_role = "stopping"  # until the daemon reports the engine's role
        self.has_failed_resource = False
        self.tiebreaker_ok: bool | None = False if s.tiebreaker else None
        self.tiebreaker_at = float("-inf")  # when the check behind `tiebreaker_ok` began
        self.lost_at = float("-inf")  # when a peer was last declared lost
        self.tiebreaker_asked = float("-inf")
        self.requested_target: str | None = None
        self.requested_until = 0.0
        self.resend_at: float | None = None  # when to repeat the pending switchover request
        self.fencing: dict[str, _Fencing] = {}
        self.fenced: set[str] = set()  # fenced since they were lost (status)
        # Peers that may run resources without us seeing them: never heard, or lost.
        self.unclean: set[str] = {n for n in s.links if n != s.local}
        self.left_clean: set[str] = set()  # said a final goodbye after stopping everything
        self.split_brain: dict[str, Any] | None = None
        self.reannounce_pending = False
        # A claim is announced (role STARTING, a fresh epoch) before anything starts; it
        # becomes a takeover only when every peer we hear echoes it (names us active
        # and carries the claim's epoch), proof that they saw this very claim.
        self.claiming = False
        self.claim_reason = ""
        self.decision = Decision(None, "no decision yet: hafd is starting")
        self.role_reason = "hafd is starting"

    # -- what we tell the peers --------------------------------------------------

    def role(self) -> Role:
        """The role advertised in heartbeats: honest about resources that may still run."""
        if self.target_active:
            return Role.ACTIVE if self.engine_role == "active" else Role.STARTING
        if self.claiming:
            return Role.STARTING  # claimed the role, waiting for the peers' echo; nothing runs yet
        if self.engine_role == "standby":
            return Role.STANDBY
        return Role.STOPPING  # still stopping, or undecided with resources possibly up

    def heartbeat(self) -> Heartbeat:
        role = self.role()
        if not self.decided and self.was_active:
            role = Role.STARTING  # claiming back what it held before its restart
        return Heartbeat(
            role=role,
            epoch=self.epoch,
            config_hash=self.s.config_hash,
            priority=self.s.priorities[self.s.local],
            active_view=self.decision.active or "",
            standby=self.standby,
            has_failed_resource=self.has_failed_resource or self.outdated is not None,
            tiebreaker_ok=self.tiebreaker_ok,
            restarting=not self.decided,  # undecided: just (re)started
        )

    def in_transition(self) -> bool:
        """Whether peers' messages must be handled the moment they arrive.

        In the steady state (every node settled as active or standby) the daemon reads
        heartbeats once per interval, which halves its wake-ups; while anything is
        moving, a peer's "I have stopped" must reach the election at once.
        """
        if not self.decided or self.requested_target is not None:
            return True
        if self.role() not in (Role.ACTIVE, Role.STANDBY):
            return True
        if self.decision.active == self.s.local and not self.target_active:
            return True  # elected, waiting for a peer to stop or for fencing
        for p in self.membership.alive_peers():
            hb = self.membership.heartbeat_of(p)
            if hb is None or hb.restarting or hb.role in (Role.STARTING, Role.STOPPING):
                return True
        return False

    # -- events ------------------------------------------------------------------

    def on_message(self, msg: Message, link: str, now: float) -> list[Act]:
        """An authenticated, admitted message from a peer."""
        self._now = now
        prev = self.membership.heartbeat_of(msg.sender)
        acts: list[Act] = [self._membership_note(e) for e in self.membership.on_heartbeat(msg.sender, link, msg, now)]
        if not acts and not self.claiming and isinstance(msg.body, Heartbeat) and msg.body == prev:
            # The steady state: nothing the election reads has changed, so the
            # decision cannot change either (40 heartbeats a second per link).
            return []
        events = self._events_only(acts)
        for e in events:
            self._on_membership(e)
        if isinstance(msg.body, Command):
            acts += self._on_command(msg.sender, msg.body, now)
        back = any(e.kind is EventKind.PEER_UP for e in events)
        if back and isinstance(msg.body, Heartbeat):
            acts += self._check_returning_peer(msg.sender, msg.body, now)
        return acts + self._decide(now)

    def _check_returning_peer(self, peer: str, hb: Heartbeat, now: float) -> list[Act]:
        """A peer that comes back already holding or releasing the role, while we held it,
        ran resources while we could not see each other: a split brain, even if it has
        already started stepping down by the time we hear it (then the election never
        sees two holders, but the VIP must still be re-announced from here)."""
        if not (self.decided and self.target_active) or hb.restarting:
            return []
        if hb.role not in (Role.ACTIVE, Role.STARTING, Role.STOPPING):
            return []
        reason = (f"split brain: {peer} comes back {hb.role.name.lower()} while {self.s.local} holds the role; "
                  f"they ran resources at the same time while apart")
        self.reannounce_pending = True
        if self.split_brain is None:
            self.split_brain = {"at": now, "reason": reason, "winner": None, "losers": [peer]}
        return [Note("split_brain", reason, "error", {"peer": peer})]

    def tick(self, now: float) -> list[Act]:
        self._now = now
        acts: list[Act] = [self._membership_note(e) for e in self.membership.tick(now)]
        for e in self._events_only(acts):
            self._on_membership(e)
        if self.requested_target and now >= self.requested_until:
            acts.append(Note("switchover_expired", f"the switchover to {self.requested_target} did not happen in time"))
            self.requested_target = None
        if self.requested_target and self.resend_at is not None and now >= self.resend_at:
            # A command is one datagram: lost, or dropped by the replay guard when the
            # heartbeat sent right after it overtakes it.  Repeat it until it is done.
            acts.append(SendCommand(Command("failover", self.requested_target)))
            self.resend_at = now + self.s.interval
        return acts + self._decide(now)

    def engine_changed(self, role: str, has_failed_resource: bool, now: float) -> list[Act]:
        """The local engine's role (active/starting/stopping/standby/failed) changed."""
        before = self.role()
        self.engine_role = role
        self.has_failed_resource = has_failed_resource
        acts: list[Act] = []
        if self.role() is not before:
            acts.append(SendNow())
        if role == "standby" and self.was_active:
            self.was_active = False
            acts.append(self._persist())
        return acts + self._decide(now)

    def fence_done(self, peer: str, ok: bool, detail: str, now: float) -> list[Act]:
        f = self.fencing.get(peer)
        if f is None or f.state != "running":
            return []
        if ok:
            f.state, f.detail = "done", detail
            self.fenced.add(peer)
            self.unclean.discard(peer)
            acts: list[Act] = [Note("peer_fenced", f"{peer} was fenced: {detail}", "warning", {"peer": peer})]
        elif self.s.fence_halt_on_failure:
            f.state, f.detail = "halted", detail
            acts = [Note("fencing_halted", f"fencing {peer} failed ({detail}); not taking over (on_failure: halt)", "error")]
        else:
            f.state, f.detail, f.retry_at = "failed", detail, now + FENCE_RETRY_DELAY
            acts = [Note("fencing_failed", f"fencing {peer} failed ({detail}); retrying in {FENCE_RETRY_DELAY:g}s", "error")]
        return acts + self._decide(now)

    def set_tiebreaker(self, ok: bool, now: float, *, checked_at: float | None = None) -> list[Act]:
        """A tiebreaker result; `checked_at` is when the check began (default: now)."""
        if not self.s.tiebreaker:
            return []
        self.tiebreaker_at = max(self.tiebreaker_at, now if checked_at is None else checked_at)
        if ok == self.tiebreaker_ok:
            waiting = self.decision.active == self.s.local and not self.target_active
            return self._decide(now) if waiting else []
        self.tiebreaker_ok = ok
        word = "reachable again" if ok else "unreachable: this node is not eligible"
        return [Note("tiebreaker_changed", f"the tiebreaker is {word}", "info" if ok else "warning"), SendNow()] + self._decide(now)

    def set_standby(self, node: str, on: bool, now: float) -> list[Act]:
        """`hafctl standby NODE`: applied here if NODE is us, else forwarded to NODE."""
        if node != self.s.local:
            return [SendCommand(Command("standby" if on else "unstandby", node))]
        self.standby = on
        what = "standby" if on else "back in service"
        return [Note("standby_changed", f"{node} is {what} (operator)"), self._persist(), SendNow()] + self._decide(now)

    def drbd_fence_peer(self, peer: str, resource: str) -> tuple[int | None, str, list[Act]]:
        """DRBD lost the replication link while Primary: DRBD's handler exit code, why, acts.

        4: the peer is alive here, so only replication broke: it is marked outdated
        cluster-wide and may not take over.  6: the peer is the active node (we are
        not): DRBD outdates us instead.  7: hafd fenced it.  None: it is gone and not
        fenced yet: the caller runs the fence command (if configured) and answers 7
        on success, else 5 (DRBD then proceeds only with an UpToDate local disk).
        """
        if peer in self.membership.alive_peers():
            hb = self.membership.heartbeat_of(peer)
            if hb is not None and hb.role in HOLDING and not self.target_active:
                return 6, f"{peer} is the active node: outdate ourselves", []
            return 4, f"{peer} is reachable over the HA links; marked outdated for {resource}", self.outdate_peer(
                peer, resource)
        if peer in self.fenced:
            return 7, f"{peer} was fenced by hafd", []
        return None, f"{peer} is unreachable and not fenced", []

    def peer_fenced_outside(self, peer: str) -> None:
        """A fence run for DRBD's handler (not for a takeover) succeeded."""
        self.fenced.add(peer)
        self.unclean.discard(peer)

    def outdate_peer(self, peer: str, resource: str) -> list[Act]:
        """DRBD lost its replication link to a peer we still see: mark the peer outdated."""
        return [Note("peer_outdated", f"{peer} is marked outdated for {resource} (DRBD fence-peer)", "warning"),
                SendCommand(Command("outdate", {"node": peer, "resource": resource}))]

    def set_outdated(self, resource: str | None, why: str, now: float) -> list[Act]:
        self.outdated = resource
        level = "warning" if resource else "info"
        return [Note("outdated_changed", why, level), self._persist(), SendNow()] + self._decide(now)

    def request_switchover(self, target: str | None, now: float) -> tuple[str | None, list[Act]]:
        """`hafctl failover [--to NODE]` on any node: returns (error, acts)."""
        current = self._current_holder()
        if target is None:
            candidates = [n for n in self._ranked_visible() if n != current]
            if not candidates:
                return "no other node is online to take over", []
            target = candidates[0]
        if target not in self.s.priorities:
            return f"unknown node {target!r}", []
        if target == current:
            return f"{target} is already active", []
        if target != self.s.local and target not in self.membership.alive_peers():
            return f"{target} is not online", []
        if self.s.failback and current and self.s.priorities[target] < self.s.priorities[current]:
            return (
                f"failback is on, so {current} would take the service straight back from {target}; "
                f"put {current} in standby instead",
                [],
            )
        acts: list[Act] = [SendCommand(Command("failover", target))]
        acts += self._accept_switchover(target, now, self.s.local)
        return None, acts

    # -- internals -----------------------------------------------------------------

    def _accept_switchover(self, target: str, now: float, by: str) -> list[Act]:
        self.requested_target = target
        self.requested_until = now + SWITCHOVER_TIMEOUT
        # Every node holding the request repeats it: a peer that missed it (or restarted
        # since) would otherwise elect another node while this one waits for the target.
        self.resend_at = now + self.s.interval
        return [Note("switchover_requested", f"switchover to {target} requested on {by}")] + self._decide(now)

    def _on_command(self, sender: str, cmd: Command, now: float) -> list[Act]:
        if cmd.command in ("standby", "unstandby") and cmd.arg == self.s.local:
            if self.standby == (cmd.command == "standby"):
                return []
            return self.set_standby(self.s.local, cmd.command == "standby", now)
        if cmd.command == "failover" and isinstance(cmd.arg, str) and cmd.arg in self.s.priorities:
            if self.requested_target == cmd.arg or self._is_active(cmd.arg):
                # Already pending, or already done: repeats of a finished request still in
                # flight (they are resent every interval) must not start it over.
                return []
            return self._accept_switchover(cmd.arg, now, sender)
        if cmd.command == "outdate" and isinstance(cmd.arg, dict) and cmd.arg.get("node") == self.s.local:
            res = str(cmd.arg.get("resource") or "drbd")
            if self.outdated == res:
                return []
            return self.set_outdated(res, f"{sender}'s DRBD fence-peer handler outdated {res} here", now)
        if cmd.command == "clear-split-brain":
            self.split_brain = None
            return []
        return [Note("command_ignored", f"ignored command {cmd.command!r} from {sender}", "warning")]

    @staticmethod
    def _membership_note(e: MembershipEvent) -> Note:
        level = "warning" if e.kind in (EventKind.PEER_LOST, EventKind.LINK_DOWN) else "info"
        return Note(e.kind.value, e.reason, level, {"peer": e.node, "_event": e})

    @staticmethod
    def _events_only(acts: list[Act]) -> list[MembershipEvent]:
        return [a.fields["_event"] for a in acts if isinstance(a, Note) and "_event" in a.fields]

    def _on_membership(self, e: MembershipEvent) -> None:
        if e.kind is EventKind.PEER_LEAVING and not e.restarting:
            # Only sent once its resources are stopped (stop_resources_on_exit).
            self.left_clean.add(e.node)
        elif e.kind is EventKind.PEER_LOST:
            self.lost_at = self._now
            if e.node not in self.left_clean:
                self.unclean.add(e.node)
            self.fencing.pop(e.node, None)
            self.fenced.discard(e.node)
        elif e.kind in (EventKind.PEER_UP, EventKind.PEER_RESTARTED):
            # Seen again: it tells us its role itself, so it needs no fencing now.  Not
            # so a lost peer whose new boot's first word is a goodbye: it is still not
            # alive, and a restarting daemon leaves its resources running.
            if e.kind is EventKind.PEER_UP or e.node in self.membership.alive_peers():
                self.unclean.discard(e.node)
            self.left_clean.discard(e.node)
            self.fencing.pop(e.node, None)

    def _ranked_visible(self) -> list[str]:
        names = [self.s.local, *self.membership.alive_peers()]
        return sorted(names, key=lambda n: (-self.s.priorities[n], n))

    def _current_holder(self) -> str | None:
        if self.target_active:
            return self.s.local
        for p in self.membership.alive_peers():
            hb = self.membership.heartbeat_of(p)
            if hb is not None and hb.role in HOLDING:
                return p
        return None

    def _is_active(self, node: str) -> bool:
        """`node` runs the whole service now, by its own heartbeat (or our engine)."""
        if node == self.s.local:
            return self.role() is Role.ACTIVE
        hb = self.membership.heartbeat_of(node) if node in self.membership.alive_peers() else None
        return hb is not None and hb.role is Role.ACTIVE

    def _local_state(self) -> NodeState:
        role = self.role()
        if not self.decided:
            # Restarted while holding the role: claim it back only if no settled peer
            # took over meanwhile (another restarted claimant is settled by the split
            # brain rule instead).
            peer_holds = any(
                (hb := self.membership.heartbeat_of(p)) is not None and hb.role in HOLDING and not hb.restarting
                for p in self.membership.alive_peers()
            )
            role = Role.STARTING if self.was_active and not peer_holds else Role.STANDBY
        return NodeState(
            priority=self.s.priorities[self.s.local],
            role=role,
            epoch=self.epoch,
            standby=self.standby,
            has_failed_resource=self.has_failed_resource or self.outdated is not None,
            tiebreaker_ok=self.tiebreaker_ok,
            config_hash=self.s.config_hash,
        )

    def _in_startup_wait(self, now: float) -> bool:
        """Over for good once the time is up or every peer has been heard at least once
        (a peer lost right after that is a failover, not a reason to keep waiting)."""
        if self.startup_over_for_good:
            return False
        peers = [n for n in self.s.links if n != self.s.local]
        alive = self.membership.alive_peers()
        if now >= self.startup_until or all(p in alive for p in peers):
            self.startup_over_for_good = True
            return False
        return True

    def _decide(self, now: float) -> list[Act]:
        snap = self.membership.snapshot(now)
        nodes = visible_nodes(self.s.local, self._local_state(), snap)
        if self.decided and self.target_active:
            # A restarted peer claiming back a role we took over yields as soon as it
            # hears us: do not let its claim start a split brain here.
            for n, st in list(nodes.items()):
                hb = self.membership.heartbeat_of(n) if n != self.s.local else None
                if hb is not None and hb.restarting and st.role in HOLDING:
                    nodes[n] = replace(st, role=Role.STOPPING)
        view = ElectionInput(
            local=self.s.local,
            nodes=nodes,
            local_config_hash=self.s.config_hash,
            failback=self.s.failback,
            startup_wait=self._in_startup_wait(now),
            was_active=self.was_active,
            requested_target=self.requested_target,
        )
        d = decide(view)
        acts: list[Act] = []
        if d.active == self.requested_target and d.active is not None and nodes[d.active].role is Role.ACTIVE:
            self.requested_target = None  # done
        if d.active is not None and d.active != self.s.local:
            hb = self.membership.heartbeat_of(d.active)
            if hb is not None and hb.role in HOLDING and hb.epoch != self.epoch:
                # Echo the holder's claim: our heartbeat (active_view, epoch) is its consent.
                self.epoch = hb.epoch
                acts += [SendNow()]
        if self.claiming and d.active != self.s.local:
            self.claiming = False
            self.claim_reason = ""
            acts += [Note("claim_withdrawn", f"{self.s.local} withdraws its claim: {d.reason}"), SendNow()]
        if d != self.decision:
            acts.append(SendNow())  # our active_view changed: peers may be waiting for it
            if d.split_brain and not self.decision.split_brain:
                acts.append(Note("split_brain", d.reason, "error", {"losers": list(d.losers)}))
                self.split_brain = {"at": now, "reason": d.reason, "winner": d.active, "losers": list(d.losers)}
                if d.active == self.s.local:
                    self.reannounce_pending = True
            acts.append(Note("election", d.reason, fields={"active": d.active}))
            self.decision = d
        if self.startup_over(now) or d.active is not None or self.target_active:
            acts += self._act_on(d, nodes, now)
        return acts

    def startup_over(self, now: float) -> bool:
        return not self._in_startup_wait(now)

    def _act_on(self, d: Decision, nodes: dict[str, NodeState], now: float) -> list[Act]:
        local = self.s.local
        acts: list[Act] = []
        if d.active == local:
            if not self.target_active:
                acts += self._try_take(d, nodes, now)
            elif self.reannounce_pending and not any(
                n != local and s.role in (Role.ACTIVE, Role.STARTING, Role.STOPPING) for n, s in nodes.items()
            ):
                self.reannounce_pending = False
                # The losers come from the split-brain record when the election never saw
                # two holders (the loser was already stopping when we heard it back).
                losers = list(d.losers) or list((self.split_brain or {}).get("losers") or [])
                acts.append(Reannounce(f"won the split brain; {', '.join(losers)} stopped"))
            # Decided only once it took the role: a node still waiting (to fence, or for
            # a busy peer) must still stop its adopted resources if the role goes elsewhere.
            return acts
        keep = (
            d.active is None
            and self.target_active
            and not d.split_brain
            and self.has_failed_resource
            and not self.standby
            and self.tiebreaker_ok is not False
            # A lost, unfenced peer may still be serving: half a service here (a VIP
            # without its data) would only collide with it.
            and not (self.unclean - set(self.membership.alive_peers()))
        )
        if keep:
            self.decided = True
            return acts  # no node can take over: keep what still runs here
        if self.target_active or not self.decided:
            if self.target_active:
                # A fence covers the takeover it was done for: a fenced peer boots again
                # and may serve unseen by the time this node wants the role back.
                for p in self.fenced - set(self.membership.alive_peers()):
                    self.unclean.add(p)
                    self.fencing.pop(p, None)
            self.target_active = False
            self.reannounce_pending = False
            self.decided = True
            why = d.reason if d.active != local else "stepping down"
            self.role_reason = why
            acts += [Note("role_target", f"{local} stops its resources: {why}"), SetTarget(False, why), SendNow()]
        return acts

    def _try_take(self, d: Decision, nodes: dict[str, NodeState], now: float) -> list[Act]:
        local = self.s.local
        if self._in_startup_wait(now):
            # Rule 1 names a restarted ex-holder before it could hear its peers; what it
            # adopted keeps running untouched (the engine waits for a target), but it
            # starts nothing, and fences nobody, until it heard them or the wait is over:
            # a peer may have taken over meanwhile and be the healthy holder.
            return []
        if any(self.membership.heartbeat_of(p) is None for p in self.membership.alive_peers()):
            # Alive through a command or goodbye, but its role is not known yet: it is
            # missing from `nodes`, so may_start cannot see that it may be active.
            return []
        if self.s.tiebreaker and self.tiebreaker_at < self.lost_at:
            # Its last answer predates losing the peer: an isolated node would still
            # think it may serve. Ask again and decide on the fresh answer.
            if self.tiebreaker_asked < self.lost_at:
                self.tiebreaker_asked = now
                return [CheckTiebreaker(f"a peer was lost at {self.lost_at:.3f}; the last tiebreaker answer is older")]
            return []
        ok, why = may_start(local, {n: s.role for n, s in nodes.items()})
        if not ok:
            return []
        acts: list[Act] = []
        if self.s.fencing:
            pending = sorted(p for p in self.unclean if p not in self.membership.alive_peers())
            waiting = False
            for p in pending:
                f = self.fencing.setdefault(p, _Fencing())
                if f.state == "done":
                    continue
                waiting = True
                if f.state == "needed" or (f.state == "failed" and now >= f.retry_at):
                    f.state = "running"
                    acts.append(Fence(p, f"{p} is lost and may still run resources; fencing it before taking over"))
            if waiting:
                return acts
        peers = self.membership.alive_peers()
        if peers:
            if not self.claiming:
                self.claiming = True
                self.claim_reason = d.reason  # while claiming the election says "stays"; keep why it began
                # A fresh epoch for every claim, above every epoch in sight: an echo of
                # it can only come from a peer that saw this very claim.
                seen = [hb.epoch for p in peers if (hb := self.membership.heartbeat_of(p)) is not None]
                self.epoch = max([self.epoch, *seen]) + 1
                return acts + [Note("claim", f"{local} claims the role (epoch {self.epoch}): {d.reason}; waiting for "
                                             f"{', '.join(peers)} to agree", fields={"epoch": self.epoch}), SendNow()]
            waiting_for = [p for p in peers if (hb := self.membership.heartbeat_of(p)) is None
                           or hb.active_view != local or hb.epoch != self.epoch]
            if waiting_for:
                # Consent: decisions are made from the peers' last heartbeats, which can
                # be stale in crossing ways (two switchover requests, eligibility
                # changing on both sides); only an echo of this claim proves agreement.
                return acts
        self.claiming = False
        self.target_active = True
        self.decided = True
        self.was_active = True
        if d.epoch is not None and d.epoch > self.epoch:
            self.epoch = d.epoch
        fenced = [p for p in sorted(self.fenced)]
        why = self.claim_reason if peers and self.claim_reason else d.reason
        self.claim_reason = ""
        reason = why + (f" ({', '.join(fenced)} fenced)" if fenced else "")
        self.role_reason = reason
        acts += [Note("role_target", f"{local} takes the role: {reason}", fields={"epoch": self.epoch}),
                 self._persist(), SetTarget(True, reason), SendNow()]
        return acts

    def _persist(self) -> Persist:
        return Persist({"epoch": self.epoch, "was_active": self.was_active, "standby": self.standby,
                        "outdated": self.outdated})

    def next_deadline(self, now: float) -> float | None:
        times = [t for t in (self.membership.next_deadline(),) if t is not None]
        if now < self.startup_until:
            times.append(self.startup_until)
        times += [f.retry_at for f in self.fencing.values() if f.state == "failed"]
        if self.requested_target:
            times.append(self.requested_until)
            if self.resend_at is not None:
                times.append(self.resend_at)
        # A time already past was handled by the tick that just ran (or cannot act yet):
        # returning it would make the daemon spin.
        future = [t for t in times if t > now]
        return min(future) if future else None

    def status(self, now: float) -> dict[str, Any]:
        """The cluster half of `hafctl status --json`."""
        snap = self.membership.snapshot(now)
        nodes: dict[str, Any] = {}
        for name in self.s.priorities:
            if name == self.s.local:
                nodes[name] = {
                    "state": "standby" if self.standby else "online",
                    "local": True,
                    "priority": self.s.priorities[name],
                    "role": self.role().name.lower(),
                    "epoch": self.epoch,
                    "links": {a: {"state": "up", "last_seen": None, "loss": None} for a in self.s.links[name]},
                }
        for p in snap.peers:
            hb = p.heartbeat
            f = self.fencing.get(p.name)
            if p.alive:
                state = "standby" if hb is not None and hb.standby else "online"
            else:
                state = "fenced" if p.name in self.fenced else "lost" if p.boot_id is not None else "unknown"
            nodes[p.name] = {
                "state": state,
                "local": False,
                "priority": self.s.priorities[p.name],
                "role": hb.role.name.lower() if hb is not None and p.alive else None,
                "epoch": hb.epoch if hb is not None else None,
                "config_match": None if hb is None else hb.config_hash == self.s.config_hash,
                "fencing": None if f is None else {"state": f.state, "detail": f.detail},
                "last_seen_ago": None if p.last_seen_ago is None else round(p.last_seen_ago, 3),
                "links": {
                    ln.address: {
                        "state": "up" if ln.up else "down",
                        "last_seen_ago": None if ln.last_seen_ago is None else round(ln.last_seen_ago, 3),
                        "loss": None if ln.loss is None else round(ln.loss, 4),
                    }
                    for ln in p.links
                },
            }
        return {
            "nodes": nodes,
            "decision": self.decision.reason,
            "active_view": self.decision.active,
            "requested_target": self.requested_target,
            "split_brain": self.split_brain,
            "epoch": self.epoch,
            "outdated": self.outdated,
        }

    def clear_split_brain(self) -> list[Act]:
        self.split_brain = None
        return [SendCommand(Command("clear-split-brain", None))]


def settings_from_config(cfg: Any, config_hash: bytes) -> Settings:
    """Build Settings from a hafd.core.config.Config (kept here so the daemon and simulate agree)."""
    cl = cfg.cluster
    return Settings(
        local=cfg.local_node,
        priorities={n: node.priority for n, node in cfg.nodes.items()},
        links={n: tuple(node.links) for n, node in cfg.nodes.items()},
        interval=cl.interval,
        deadtime=cl.deadtime,
        failback=cl.failback,
        config_hash=config_hash,
        fencing=cl.fencing is not None,
        fence_halt_on_failure=cl.fencing is not None and cl.fencing.on_failure.value == "halt",
        tiebreaker=cl.tiebreaker is not None,
        startup_wait=getattr(cl, "startup_wait", 2.0),
        restart_grace=getattr(cl, "restart_grace", 10.0),
    )

