"""The election as a table: each row asserts the decision AND the sentence operators read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hafd.core.codec import Heartbeat, Role
from hafd.core.election import Decision, ElectionInput, NodeState, decide, may_start

H = b"\x11" * 32  # the local config hash
OTHER = b"\x22" * 32

ONE = NodeState(priority=100, role=Role.STANDBY, epoch=4, config_hash=H)
TWO = NodeState(priority=90, role=Role.STANDBY, epoch=4, config_hash=H)


def n(base: NodeState, **kw: object) -> NodeState:
    return replace(base, **kw)  # type: ignore[arg-type]


def inp(local: str = "nodeone", **nodes_and_flags: object) -> ElectionInput:
    nodes = {k: v for k, v in nodes_and_flags.items() if isinstance(v, NodeState)}
    flags = {k: v for k, v in nodes_and_flags.items() if not isinstance(v, NodeState)}
    return ElectionInput(local=local, nodes=nodes, local_config_hash=H, **flags)  # type: ignore[arg-type]


ACT = {"role": Role.ACTIVE}

CASES: list[tuple[str, ElectionInput, str | None, str]] = [
    # --- no holder: the best eligible
    ("cold start picks the higher priority", inp(nodeone=ONE, nodetwo=TWO), "nodeone",
     "nodeone becomes active: it has the highest priority among the eligible nodes (100 vs 90)"),
    ("same answer computed on the other node", inp("nodetwo", nodeone=ONE, nodetwo=TWO), "nodeone",
     "nodeone becomes active: it has the highest priority among the eligible nodes (100 vs 90)"),
    ("ties go to the first name", inp(nodeone=ONE, nodetwo=n(TWO, priority=100)), "nodeone",
     "nodeone becomes active: it ties with nodetwo on priority 100 and comes first by name"),
    ("alone after the start-up wait", inp(nodeone=ONE), "nodeone",
     "nodeone becomes active: it is the only visible node"),
    # --- stickiness and failback
    ("stickiness keeps the lower priority holder", inp(nodeone=ONE, nodetwo=n(TWO, **ACT)), "nodetwo",
     "nodetwo stays active: it already holds the role and failback is off (nodeone has a higher priority)"),
    ("a holder with nobody better just stays", inp(nodeone=n(ONE, **ACT), nodetwo=TWO), "nodeone",
     "nodeone stays active: it already holds the role"),
    ("failback moves to the strictly higher priority", inp(nodeone=ONE, nodetwo=n(TWO, **ACT), failback=True),
     "nodeone", "nodeone becomes active: failback is on and it has a higher priority than nodetwo (100 vs 90)"),
    ("failback never moves between equal priorities",
     inp(nodeone=ONE, nodetwo=n(TWO, priority=100, **ACT), failback=True), "nodetwo",
     "nodetwo stays active: it already holds the role"),
    ("a starting node is a holder too", inp(nodeone=ONE, nodetwo=n(TWO, role=Role.STARTING)), "nodetwo",
     "nodetwo stays active: it already holds the role and failback is off (nodeone has a higher priority)"),
    # --- standby, failed resources, tiebreaker
    ("a holder put in standby hands over", inp(nodeone=n(ONE, standby=True, **ACT), nodetwo=TWO), "nodetwo",
     "nodetwo becomes active: nodeone is in standby"),
    ("a failed resource moves the service", inp(nodeone=n(ONE, has_failed_resource=True, **ACT), nodetwo=TWO),
     "nodetwo", "nodetwo becomes active: nodeone has a failed resource"),
    ("standby peer leaves the only eligible node", inp(nodeone=ONE, nodetwo=n(TWO, standby=True)), "nodeone",
     "nodeone becomes active: it is the only eligible node (nodetwo is in standby)"),
    ("nobody eligible", inp(nodeone=n(ONE, has_failed_resource=True, **ACT), nodetwo=n(TWO, standby=True)), None,
     "no node is eligible: nodeone has a failed resource and nodetwo is in standby"),
    ("both failed: nobody", inp(nodeone=n(ONE, has_failed_resource=True), nodetwo=n(TWO, role=Role.FAILED)), None,
     "no node is eligible: nodeone has a failed resource and nodetwo is in the failed state"),
    ("tiebreaker unreachable", inp(nodeone=n(ONE, tiebreaker_ok=False), nodetwo=n(TWO, tiebreaker_ok=True)),
     "nodetwo", "nodetwo becomes active: it is the only eligible node (nodeone cannot reach the tiebreaker)"),
    ("a holder that loses the tiebreaker hands over",
     inp(nodeone=n(ONE, tiebreaker_ok=False, **ACT), nodetwo=n(TWO, tiebreaker_ok=True)), "nodetwo",
     "nodetwo becomes active: nodeone cannot reach the tiebreaker"),
    ("alone and cut off from the tiebreaker", inp("nodetwo", nodetwo=n(TWO, tiebreaker_ok=False)), None,
     "no node is eligible: nodetwo cannot reach the tiebreaker"),
    ("no tiebreaker configured is fine", inp(nodeone=n(ONE, tiebreaker_ok=None)), "nodeone",
     "nodeone becomes active: it is the only visible node"),
    # --- config mismatch: never moves the role, never lets both sides start
    ("mismatched peer is not eligible and nobody starts", inp(nodeone=ONE, nodetwo=n(TWO, config_hash=OTHER)), None,
     "no node becomes active: nodetwo has a different configuration than nodeone and each side could pick itself"),
    ("mismatched holder keeps the role", inp(nodeone=ONE, nodetwo=n(TWO, config_hash=OTHER, **ACT)), "nodetwo",
     "nodetwo stays active: it already holds the role and has a different configuration than nodeone, "
     "so no node takes over from it until the configurations agree"),
    ("a visible mismatch blocks any takeover, even from a standby peer",
     inp(nodeone=ONE, nodetwo=n(TWO, config_hash=OTHER, standby=True)),
     None, "no node takes over: nodetwo has a different configuration than nodeone, "
     "and a takeover waits until the configurations agree"),
    ("mismatched better node does not fail back", inp(nodetwo=n(TWO, **ACT), nodeone=n(ONE, config_hash=OTHER),
     local="nodetwo", failback=True), "nodetwo", "nodetwo stays active: it already holds the role"),
    # --- start-up wait
    ("start-up wait, alone: nobody", inp(nodeone=ONE, startup_wait=True), None,
     "no node becomes active yet: nodeone is in its start-up wait and sees no peer"),
    ("start-up wait, alone, was active: keeps it", inp(nodeone=n(ONE, role=Role.STARTING), startup_wait=True,
     was_active=True), "nodeone",
     "nodeone stays active: it held the role before its restart and no peer is visible yet"),
    ("start-up wait, was active but now in standby", inp(nodeone=n(ONE, standby=True), startup_wait=True,
     was_active=True), None, "no node is eligible: nodeone is in standby"),
    ("start-up wait ends early when a peer is seen", inp(nodeone=ONE, nodetwo=n(TWO, **ACT), startup_wait=True),
     "nodetwo", "nodetwo stays active: it already holds the role and failback is off (nodeone has a higher priority)"),
    # --- planned switchover
    ("switchover to the standby node", inp(nodeone=n(ONE, **ACT), nodetwo=TWO, requested_target="nodetwo"),
     "nodetwo", "nodetwo becomes active: the operator requested a switchover to it"),
    ("switchover to the current holder", inp(nodeone=n(ONE, **ACT), nodetwo=TWO, requested_target="nodeone"),
     "nodeone", "nodeone stays active: the operator requested a switchover to it"),
    ("switchover to an ineligible node is ignored",
     inp(nodeone=n(ONE, **ACT), nodetwo=n(TWO, standby=True), requested_target="nodetwo"), "nodeone",
     "nodeone stays active: it already holds the role (the requested target nodetwo is in standby)"),
    ("switchover to an invisible node is ignored", inp(nodeone=n(ONE, **ACT), requested_target="nodetwo"),
     "nodeone", "nodeone stays active: it already holds the role (the requested target nodetwo is not visible)"),
    # --- split brain
    ("split brain: the higher priority wins", inp(nodeone=n(ONE, epoch=5, **ACT), nodetwo=n(TWO, epoch=9, **ACT)),
     "nodeone", "split brain: nodeone and nodetwo both claim the role; nodeone keeps it because it has the highest "
     "priority (100 vs 90), and nodetwo must stop"),
    ("split brain: ties go to the first name",
     inp(nodeone=n(ONE, **ACT), nodetwo=n(TWO, priority=100, role=Role.STARTING)), "nodeone",
     "split brain: nodeone and nodetwo both claim the role; nodeone keeps it because it ties on priority 100 and "
     "comes first by name, and nodetwo must stop"),
    ("split brain: a healthy holder beats a better unhealthy one",
     inp(nodeone=n(ONE, has_failed_resource=True, **ACT), nodetwo=n(TWO, **ACT)), "nodetwo",
     "split brain: nodeone and nodetwo both claim the role; nodetwo keeps it because nodeone has a failed "
     "resource, and nodeone must stop"),
    ("split brain: config mismatch does not make each side win",
     inp("nodetwo", nodeone=n(ONE, config_hash=OTHER, **ACT), nodetwo=n(TWO, **ACT)), "nodeone",
     "split brain: nodeone and nodetwo both claim the role; nodeone keeps it because it has the highest "
     "priority (100 vs 90), and nodetwo must stop"),
    ("split brain: no holder may keep it",
     inp(nodeone=n(ONE, standby=True, **ACT), nodetwo=n(TWO, standby=True, **ACT)), None,
     "split brain: nodeone and nodetwo both claim the role but none may hold it and no node is eligible: "
     "nodeone is in standby and nodetwo is in standby"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_decision_table(case: tuple[str, ElectionInput, str | None, str]) -> None:
    _, view, active, reason = case
    d = decide(view)
    assert d.reason == reason
    assert d.active == active


def test_both_nodes_reach_the_same_decision_for_every_row() -> None:
    """The rows without a local-only input must agree when computed on each visible node."""
    for name, view, _, _ in CASES:
        if view.startup_wait or any(s.config_hash != H for s in view.nodes.values()):
            continue
        answers = {decide(replace(view, local=local)).active for local in view.nodes}
        assert len(answers) == 1, name


def test_split_brain_names_the_loser_and_claims_a_new_epoch() -> None:
    d = decide(inp(nodeone=n(ONE, epoch=5, **ACT), nodetwo=n(TWO, epoch=9, **ACT)))
    assert d.split_brain and d.losers == ("nodetwo",) and d.epoch == 10


def test_split_brain_with_three_holders_and_a_healthy_bystander() -> None:
    three = NodeState(priority=10, role=Role.STANDBY, config_hash=H)
    d = decide(
        inp(
            nodeone=n(ONE, standby=True, **ACT),
            nodetwo=n(TWO, standby=True, **ACT),
            nodethree=three,
        )
    )
    assert d == Decision(
        active="nodethree",
        reason="split brain: nodeone and nodetwo both claim the role but none may hold it "
        "(nodeone is in standby and nodetwo is in standby); nodethree becomes active",
        split_brain=True,
        losers=("nodeone", "nodetwo"),
        epoch=5,
    )


def test_epochs_sticky_holder_keeps_its_epoch_a_new_holder_bumps_it() -> None:
    assert decide(inp(nodeone=n(ONE, epoch=7, **ACT), nodetwo=n(TWO, epoch=3))).epoch == 7
    moved = decide(inp(nodeone=n(ONE, epoch=7, standby=True, **ACT), nodetwo=n(TWO, epoch=3)))
    assert (moved.active, moved.epoch, moved.losers) == ("nodetwo", 8, ("nodeone",))
    assert decide(inp(nodeone=ONE, nodetwo=TWO)).epoch == 5
    assert decide(inp(nodeone=ONE, startup_wait=True)).epoch is None


def test_local_node_must_be_visible() -> None:
    with pytest.raises(ValueError, match="local node"):
        decide(inp(nodetwo=TWO))


def test_node_state_from_heartbeat() -> None:
    hb = Heartbeat(role=Role.ACTIVE, epoch=9, config_hash=H, priority=90, standby=True, tiebreaker_ok=False)
    s = NodeState.from_heartbeat(hb)
    assert s == NodeState(priority=90, role=Role.ACTIVE, epoch=9, standby=True, tiebreaker_ok=False, config_hash=H)


@pytest.mark.parametrize(
    "roles, ok, reason",
    [
        ({"nodeone": Role.STANDBY, "nodetwo": Role.STANDBY}, True,
         "nodeone may start: no other visible node is active, starting or stopping"),
        ({"nodeone": Role.STANDBY}, True, "nodeone may start: no other visible node is active, starting or stopping"),
        ({"nodeone": Role.STANDBY, "nodetwo": Role.STOPPING}, False, "nodeone may not start yet: nodetwo is stopping"),
        ({"nodeone": Role.STANDBY, "nodetwo": Role.ACTIVE}, False, "nodeone may not start yet: nodetwo is active"),
        ({"nodeone": Role.STARTING, "nodetwo": Role.STARTING, "nodethree": Role.FAILED}, False,
         "nodeone may not start yet: nodetwo is starting"),
        ({"nodeone": Role.ACTIVE, "nodetwo": Role.FAILED}, True,
         "nodeone may start: no other visible node is active, starting or stopping"),
    ],
)
def test_may_start(roles: dict[str, Role], ok: bool, reason: str) -> None:
    assert may_start("nodeone", roles) == (ok, reason)


# ------------------------------------------------------------------ the safety property

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

node_states = st.builds(
    NodeState,
    priority=st.sampled_from([90, 100]),
    role=st.sampled_from(Role),
    epoch=st.integers(0, 3),
    standby=st.booleans(),
    has_failed_resource=st.booleans(),
    tiebreaker_ok=st.sampled_from([None, True, False]),
    config_hash=st.sampled_from([H, OTHER]),
)


@settings(max_examples=3000, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["nodeone", "nodetwo", "nodethree", "nodefour"]), node_states, min_size=1, max_size=4),
    st.booleans(),
    st.none() | st.sampled_from(["nodeone", "nodetwo", "nodethree"]),
)
def test_no_two_nodes_ever_both_pick_themselves(nodes: dict[str, NodeState], failback: bool, target: str | None) -> None:
    """Each node decides with ITS OWN config hash; at most one of them may name itself."""
    claimants = []
    for local, state in nodes.items():
        d = decide(
            ElectionInput(
                local=local, nodes=nodes, local_config_hash=state.config_hash, failback=failback,
                requested_target=target,
            )
        )
        assert d.reason and (d.active is None or d.active in nodes)
        if d.active == local:
            claimants.append(local)
    assert len(claimants) <= 1, claimants


@settings(max_examples=2000, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["nodeone", "nodetwo", "nodethree"]), node_states, min_size=1, max_size=3),
    st.booleans(),
)
def test_with_one_configuration_every_node_names_the_same_active(nodes: dict[str, NodeState], failback: bool) -> None:
    nodes = {k: replace(v, config_hash=H) for k, v in nodes.items()}
    decisions = {decide(ElectionInput(local=k, nodes=nodes, local_config_hash=H, failback=failback)) for k in nodes}
    assert len(decisions) == 1
    (d,) = decisions
    healthy = [k for k, v in nodes.items() if not (v.standby or v.has_failed_resource or v.role is Role.FAILED
                                                     or v.tiebreaker_ok is False)]
    assert (d.active is None) == (not healthy)


def test_visible_nodes_from_a_membership_snapshot() -> None:
    from hafd.core.codec import Message
    from hafd.core.election import visible_nodes
    from hafd.core.membership import Membership

    ms = Membership("nodeone", {"nodetwo": ["a"], "nodethree": ["b"]}, 0.025, 0.36)
    hb = Heartbeat(role=Role.ACTIVE, epoch=9, config_hash=H, priority=90)
    ms.on_heartbeat("nodetwo", "a", Message("nodetwo", b"\1" * 16, 1, 0.0, hb), 0.0)
    nodes = visible_nodes("nodeone", ONE, ms.snapshot(0.1))
    assert nodes == {"nodeone": ONE, "nodetwo": NodeState.from_heartbeat(hb)}
    assert decide(inp(**nodes)).active == "nodetwo"
    ms.tick(1.0)
    assert visible_nodes("nodeone", ONE, ms.snapshot(1.0)) == {"nodeone": ONE}
