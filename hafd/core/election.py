"""Who should be active, as one pure function with a one-sentence reason.

Every node runs `decide` on the same heartbeat contents, so every rule may only use
data that both sides see identically (priorities, roles, flags and epochs all travel in
the heartbeats).  The one asymmetric input is "is this node's config hash equal to
mine": from each side of a mismatch it is the OTHER node that differs.  Excluding the
other side outright would let two healthy nodes each pick itself, so a mismatch never
moves the role: a holder keeps it, nobody takes it from a healthy mismatched holder, and
with no holder nobody starts while a healthy node with another configuration is visible.

Rules, in order:
1. Start-up wait with no peer visible: nobody, unless the local node held the role before
   its restart (then it keeps it, if eligible).
2. Split brain (two or more visible holders, role active or starting): the winner is the
   holder that is healthy (not standby, no failed resource, tiebreaker not failing), then
   the higher priority, then the name first in ascending order; the others must stop.
   Why not the epoch: during a partition each side bumps its own epoch from the same
   base, so epochs tie or depend on how often each side flapped.  Why not "held it
   longer": that needs a shared clock.  Priority and name are configuration both sides
   share, so both sides name the same winner without talking, and the winner is the
   node the operator prefers.  The winner then claims max(epochs) + 1, so anything sent
   under an older epoch (a late handover-done) is recognisably stale.
3. An operator's switchover target (`hafctl failover --to X`) wins if it is eligible.
4. One holder: it keeps the role while healthy (stickiness), unless failback is on and an
   eligible node has a strictly higher priority.  An unhealthy holder gives the role to
   the best eligible node.
5. No holder: the best eligible node (priority descending, then name ascending).
Otherwise nobody, and the reason lists what disqualifies each node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from hafd.core.codec import Heartbeat, Role
from hafd.core.membership import MembershipSnapshot

HOLDING = (Role.ACTIVE, Role.STARTING)
BUSY = (Role.ACTIVE, Role.STARTING, Role.STOPPING)


@dataclass(frozen=True)
class NodeState:
    priority: int
    role: Role
    epoch: int = 0
    standby: bool = False
    has_failed_resource: bool = False
    tiebreaker_ok: bool | None = None  # None: no tiebreaker configured
    config_hash: bytes = b""

    @classmethod
    def from_heartbeat(cls, hb: Heartbeat) -> NodeState:
        return cls(
            priority=hb.priority,
            role=hb.role,
            epoch=hb.epoch,
            standby=hb.standby,
            has_failed_resource=hb.has_failed_resource,
            tiebreaker_ok=hb.tiebreaker_ok,
            config_hash=hb.config_hash,
        )


@dataclass(frozen=True)
class ElectionInput:
    local: str
    nodes: Mapping[str, NodeState]  # the visible ones: the local node and every alive peer
    local_config_hash: bytes
    failback: bool = False
    startup_wait: bool = False  # the local node has not yet waited long enough to hear its peers
    was_active: bool = False  # the local node held the role before its restart (from state_dir)
    requested_target: str | None = None


@dataclass(frozen=True)
class Decision:
    active: str | None
    reason: str
    split_brain: bool = False
    losers: tuple[str, ...] = ()  # holders that must stop (split brain or a move)
    epoch: int | None = None  # the epoch `active` should hold: max(visible) + 1 when it takes the role anew


def _join(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class _View:
    def __init__(self, v: ElectionInput) -> None:
        if v.local not in v.nodes:
            raise ValueError(f"the local node {v.local!r} must be among the visible nodes")
        self.v = v
        self.nodes = v.nodes
        self.ranked = sorted(v.nodes, key=lambda n: (-v.nodes[n].priority, n))
        self.holders = [n for n in self.ranked if v.nodes[n].role in HOLDING]
        self.max_epoch = max(s.epoch for s in v.nodes.values())

    def health_problems(self, name: str) -> list[str]:
        """The disqualifications every node sees alike."""
        n = self.nodes[name]
        out = []
        if n.standby:
            out.append("is in standby")
        if n.has_failed_resource:
            out.append("has a failed resource")
        if n.role is Role.FAILED:
            out.append("is in the failed state")
        if n.tiebreaker_ok is False:
            out.append("cannot reach the tiebreaker")
        return out

    def mismatched(self, name: str) -> bool:
        return self.nodes[name].config_hash != self.v.local_config_hash

    def problems(self, name: str) -> list[str]:
        out = self.health_problems(name)
        if self.mismatched(name):
            out.append(f"has a different configuration than {self.v.local}")
        return out

    def healthy(self, name: str) -> bool:
        return not self.health_problems(name)

    def eligible(self) -> list[str]:
        return [n for n in self.ranked if not self.problems(n)]

    def why_not(self, names: list[str]) -> str:
        return _join([f"{n} {' and '.join(self.problems(n))}" for n in names if self.problems(n)])

    def prio(self, name: str) -> int:
        return self.nodes[name].priority

    def rivals(self) -> list[str]:
        """Healthy nodes with another configuration: from THEIR view, they are the eligible ones."""
        return [n for n in self.ranked if self.healthy(n) and self.mismatched(n)]

    def take(self, name: str, reason: str, losers: tuple[str, ...] = (), note: str = "") -> Decision:
        """`name` keeps the role, or takes it anew with a fresh epoch if no rival could too."""
        if self.holders == [name]:
            return Decision(active=name, reason=reason + note, losers=losers, epoch=self.nodes[name].epoch)
        rivals = self.rivals()
        if rivals:
            return self.nobody(
                f"no node becomes active: {_join(rivals)} {'has' if len(rivals) == 1 else 'have'} a different "
                f"configuration than {self.v.local} and each side could pick itself{note}"
            )
        others = [n for n in self.ranked if self.mismatched(n)]
        if others:
            # Symmetric: each side sees the other as mismatched, so neither takes the
            # role anew while they disagree (a holder keeps it, above).
            return self.nobody(
                f"no node takes over: {_join(others)} {'has' if len(others) == 1 else 'have'} a different "
                f"configuration than {self.v.local}, and a takeover waits until the configurations agree{note}"
            )
        return Decision(active=name, reason=reason + note, losers=losers, epoch=self.max_epoch + 1)

    def nobody(self, reason: str) -> Decision:
        return Decision(active=None, reason=reason, losers=tuple(self.holders))


def decide(view: ElectionInput) -> Decision:
    """The node that should hold the role among the visible ones, and why, in one sentence."""
    w = _View(view)
    local = view.local
    peers = [n for n in w.ranked if n != local]
    eligible = w.eligible()

    if view.startup_wait and not peers:
        if not view.was_active:
            return w.nobody(f"no node becomes active yet: {local} is in its start-up wait and sees no peer")
        if local in eligible:
            return w.take(local, f"{local} stays active: it held the role before its restart and no peer is visible yet")
        return w.nobody(f"no node is eligible: {w.why_not([local])}")

    if len(w.holders) >= 2:
        return _split_brain(w)

    target = view.requested_target
    note = ""
    if target is not None:
        if target not in view.nodes:
            note = f" (the requested target {target} is not visible)"
        elif target not in eligible:
            note = f" (the requested target {target} {' and '.join(w.problems(target))})"
        else:
            verb = "stays" if w.holders == [target] else "becomes"
            losers = tuple(h for h in w.holders if h != target)
            return w.take(target, f"{target} {verb} active: the operator requested a switchover to it", losers)

    if w.holders:
        return _one_holder(w, w.holders[0], eligible, note)

    if not eligible:
        return w.nobody(f"no node is eligible: {w.why_not(w.ranked)}{note}")
    best = eligible[0]
    others = [n for n in w.ranked if n != best]
    if not others:
        why = "it is the only visible node"
    elif len(eligible) == 1:
        why = f"it is the only eligible node ({w.why_not(others)})"
    elif w.prio(eligible[1]) < w.prio(best):
        why = f"it has the highest priority among the eligible nodes ({w.prio(best)} vs {w.prio(eligible[1])})"
    else:
        why = f"it ties with {eligible[1]} on priority {w.prio(best)} and comes first by name"
    return w.take(best, f"{best} becomes active: {why}", note=note)


def _one_holder(w: _View, holder: str, eligible: list[str], note: str) -> Decision:
    if w.healthy(holder) and w.mismatched(holder):
        return w.take(
            holder,
            f"{holder} stays active: it already holds the role and has a different configuration than "
            f"{w.v.local}, so no node takes over from it until the configurations agree",
            note=note,
        )
    if holder in eligible:
        better = [n for n in eligible if w.prio(n) > w.prio(holder)]
        if better and w.v.failback:
            b = better[0]
            return w.take(
                b,
                f"{b} becomes active: failback is on and it has a higher priority than {holder} "
                f"({w.prio(b)} vs {w.prio(holder)})",
                losers=(holder,),
                note=note,
            )
        if better:
            return w.take(
                holder,
                f"{holder} stays active: it already holds the role and failback is off "
                f"({better[0]} has a higher priority)",
                note=note,
            )
        return w.take(holder, f"{holder} stays active: it already holds the role", note=note)
    if eligible:
        return w.take(eligible[0], f"{eligible[0]} becomes active: {w.why_not([holder])}", (holder,), note)
    return w.nobody(f"no node is eligible: {w.why_not(w.ranked)}{note}")


def _split_brain(w: _View) -> Decision:
    holders = w.holders  # already ranked: priority descending, then name
    claim = f"split brain: {_join(holders)} {'both' if len(holders) == 2 else 'all'} claim the role"
    healthy = [h for h in holders if w.healthy(h)]
    if healthy:
        winner = healthy[0]
        losers = tuple(h for h in holders if h != winner)
        sick = [h for h in holders if h not in healthy]
        if sick:
            why = _join([f"{h} {' and '.join(w.health_problems(h))}" for h in sick])
        elif w.prio(losers[0]) < w.prio(winner):
            why = f"it has the highest priority ({w.prio(winner)} vs {w.prio(losers[0])})"
        else:
            why = f"it ties on priority {w.prio(winner)} and comes first by name"
        reason = f"{claim}; {winner} keeps it because {why}, and {_join(list(losers))} must stop"
        return Decision(active=winner, reason=reason, split_brain=True, losers=losers, epoch=w.max_epoch + 1)
    others = [n for n in w.eligible() if n not in holders]
    unfit = w.why_not(holders)
    if others:
        d = w.take(others[0], f"{claim} but none may hold it ({unfit}); {others[0]} becomes active", tuple(holders))
        return replace(d, split_brain=True)
    reason = f"{claim} but none may hold it and no node is eligible: {w.why_not(w.ranked)}"
    return Decision(active=None, reason=reason, split_brain=True, losers=tuple(holders))


def visible_nodes(local: str, local_state: NodeState, snapshot: MembershipSnapshot) -> dict[str, NodeState]:
    """The `nodes` of an ElectionInput: the local node and every alive peer whose heartbeat we hold.

    A peer held alive through a restart keeps its last heartbeat, so a survivor keeps
    seeing it as the holder and does not take over from a node that is coming back.
    """
    out = {local: local_state}
    for p in snapshot.peers:
        if p.alive and p.heartbeat is not None:
            out[p.name] = NodeState.from_heartbeat(p.heartbeat)
    return out


def may_start(local: str, visible_roles: Mapping[str, Role]) -> tuple[bool, str]:
    """A node never starts resources while it sees another node active, starting or stopping."""
    busy = sorted(n for n, r in visible_roles.items() if n != local and r in BUSY)
    if busy:
        what = _join([f"{n} is {visible_roles[n].name.lower()}" for n in busy])
        return False, f"{local} may not start yet: {what}"
    return True, f"{local} may start: no other visible node is active, starting or stopping"
