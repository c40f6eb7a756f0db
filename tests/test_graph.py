"""The planner: start/stop/recovery plans as waves, on the seed's graph, diamonds and cycles."""

import pytest

from hafd.core.graph import CycleError, Graph, find_cycle

SEED = {"drbd": [], "data": ["drbd"], "vip": [], "dhcpd": ["data", "vip"]}
DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


@pytest.mark.parametrize(
    "requires, start, stop",
    [
        (SEED, (("drbd", "vip"), ("data",), ("dhcpd",)), (("dhcpd",), ("data", "vip"), ("drbd",))),
        (DIAMOND, (("a",), ("b", "c"), ("d",)), (("d",), ("b", "c"), ("a",))),
        ({"x": [], "y": []}, (("x", "y"),), (("x", "y"),)),
        ({"a": [], "b": ["a"], "c": ["b"]}, (("a",), ("b",), ("c",)), (("c",), ("b",), ("a",))),
        ({}, (), ()),
    ],
    ids=["seed", "diamond", "independent", "chain", "empty"],
)
def test_start_and_stop_plans(requires, start, stop):
    g = Graph.build(requires)
    assert g.start_plan() == start
    assert g.stop_plan() == stop


def test_stop_plan_stops_each_resource_after_all_its_dependents():
    waves = Graph.build(SEED).stop_plan()
    pos = {n: i for i, w in enumerate(waves) for n in w}
    for n, deps in SEED.items():
        for d in deps:
            assert pos[n] < pos[d], f"{n} must stop before {d}"


@pytest.mark.parametrize(
    "failed, stop, start",
    [
        ("data", (("dhcpd",), ("data",)), (("data",), ("dhcpd",))),
        ("drbd", (("dhcpd",), ("data",), ("drbd",)), (("drbd",), ("data",), ("dhcpd",))),
        ("dhcpd", (("dhcpd",),), (("dhcpd",),)),
        ("vip", (("dhcpd",), ("vip",)), (("vip",), ("dhcpd",))),
    ],
)
def test_recovery_plan_stops_dependents_restarts_and_starts_them_again(failed, stop, start):
    assert Graph.build(SEED).recovery_plan(failed) == (stop, start)


def test_diamond_recovery_of_the_root_touches_everything_in_order():
    stop, start = Graph.build(DIAMOND).recovery_plan("a")
    assert stop == (("d",), ("b", "c"), ("a",))
    assert start == (("a",), ("b", "c"), ("d",))


def test_all_dependents_is_transitive():
    g = Graph.build(SEED)
    assert g.all_dependents("drbd") == ("data", "dhcpd")
    assert g.all_dependents("dhcpd") == ()


@pytest.mark.parametrize(
    "requires, cycle",
    [
        ({"a": ["a"]}, ("a", "a")),
        ({"a": ["b"], "b": ["a"]}, ("a", "b", "a")),
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}, ("a", "b", "c", "a")),
        ({"x": [], "a": ["x", "b"], "b": ["c"], "c": ["b"]}, ("b", "c", "b")),
    ],
)
def test_cycles_are_named(requires, cycle):
    assert find_cycle(requires) == cycle
    with pytest.raises(CycleError) as e:
        Graph.build(requires)
    assert str(e.value) == "dependency cycle " + " -> ".join(cycle)


def test_unknown_requirement_is_rejected():
    with pytest.raises(KeyError, match="unknown resource 'nope'"):
        Graph.build({"a": ["nope"]})


def test_long_chain_does_not_recurse_too_deep():
    n = 3000
    req = {f"r{i}": ([f"r{i-1}"] if i else []) for i in range(n)}
    assert find_cycle(req) is None
    req["r0"] = [f"r{n-1}"]
    assert len(find_cycle(req)) == n + 1
