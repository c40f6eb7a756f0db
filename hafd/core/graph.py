"""The resource DAG and its plans.

A plan is a list of waves: every resource in a wave may run concurrently, and a
wave starts only when the previous one is done.  The engine reconciles towards a
target instead of replaying plans step by step (so a half-finished plan after a
crash or a failure needs no special case), but it uses the same relations
(`requires`, `dependents`) — the plans here are what `hafctl simulate`, the docs
and the tests show, and they are what the engine's reconcile order produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

Wave = tuple[str, ...]
Plan = tuple[Wave, ...]


class CycleError(ValueError):
    """The graph has a cycle; `cycle` lists it closed, e.g. ('a', 'b', 'a')."""

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__("dependency cycle " + " -> ".join(cycle))
        self.cycle = tuple(cycle)


@dataclass(frozen=True)
class Graph:
    """Resources in configuration order with their direct requirements."""

    order: tuple[str, ...]
    requires: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, requires: Mapping[str, Iterable[str]]) -> "Graph":
        """Build from {name: requires}; raise CycleError or KeyError on bad edges."""
        req = {n: tuple(r) for n, r in requires.items()}
        for name, deps in req.items():
            for d in deps:
                if d not in req:
                    raise KeyError(f"{name} requires unknown resource {d!r}")
        cycle = find_cycle(req)
        if cycle:
            raise CycleError(cycle)
        return cls(tuple(req), req)

    def dependents(self, name: str) -> tuple[str, ...]:
        """Resources that directly require `name`, in configuration order."""
        return tuple(n for n in self.order if name in self.requires[n])

    def all_dependents(self, name: str) -> tuple[str, ...]:
        """Everything that transitively requires `name` (not including it)."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            for d in self.dependents(stack.pop()):
                if d not in seen:
                    seen.add(d)
                    stack.append(d)
        return tuple(n for n in self.order if n in seen)

    def start_plan(self, subset: Iterable[str] | None = None) -> Plan:
        """Dependencies first; a resource's wave is 1 + the deepest of its requirements."""
        names = set(self.order if subset is None else subset)
        depth: dict[str, int] = {}

        def level(n: str) -> int:
            if n not in depth:
                deps = [d for d in self.requires[n] if d in names]
                depth[n] = 1 + max((level(d) for d in deps), default=-1)
            return depth[n]

        for n in names:
            level(n)
        return _waves(self.order, depth)

    def stop_plan(self, subset: Iterable[str] | None = None) -> Plan:
        """The reverse: a resource stops only after everything that requires it."""
        names = set(self.order if subset is None else subset)
        height: dict[str, int] = {}

        def level(n: str) -> int:
            if n not in height:
                deps = [d for d in self.dependents(n) if d in names]
                height[n] = 1 + max((level(d) for d in deps), default=-1)
            return height[n]

        for n in names:
            level(n)
        return _waves(self.order, height)

    def recovery_plan(self, failed: str) -> tuple[Plan, Plan]:
        """For "`failed` failed": (stop plan, start plan) over it and its dependents.

        Dependents stop in reverse first, then `failed` itself is stopped (cleaning
        up whatever is left of it), then it and its dependents start again.
        """
        affected = (failed, *self.all_dependents(failed))
        return self.stop_plan(affected), self.start_plan(affected)


def _waves(order: Sequence[str], level: Mapping[str, int]) -> Plan:
    if not level:
        return ()
    waves: list[list[str]] = [[] for _ in range(max(level.values()) + 1)]
    for n in order:
        if n in level:
            waves[level[n]].append(n)
    return tuple(tuple(w) for w in waves)


def find_cycle(requires: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """Return one cycle as a closed path (a, b, a), or None; edges to unknown names are ignored."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(requires, WHITE)
    for root in requires:
        if colour[root] != WHITE:
            continue
        # Iterative DFS so a long chain cannot hit the recursion limit.
        path: list[str] = [root]
        iters = [iter(requires[root])]
        colour[root] = GREY
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                iters.pop()
                continue
            if nxt not in colour:
                continue
            if colour[nxt] == GREY:
                return (*path[path.index(nxt):], nxt)
            if colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                iters.append(iter(requires[nxt]))
    return None
