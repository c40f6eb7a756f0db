"""Placeholder: the OCF resource agent runner is being written (issue 6)."""

from __future__ import annotations

from hafd.agents.base import Agent, AgentError, Status


class OcfAgent(Agent):
    async def start(self) -> None:
        raise AgentError("ocf resources are not implemented yet")

    async def stop(self) -> None:
        raise AgentError("ocf resources are not implemented yet")

    async def monitor(self) -> Status:
        raise AgentError("ocf resources are not implemented yet")
