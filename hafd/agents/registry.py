"""Which agent class runs which `type:` of resource.

The config validator has its own table of types and keys (hafd/core/configload.py);
a test checks that both tables name the same types, so a new type cannot be
configurable without an agent, or the reverse.
"""

from __future__ import annotations

from hafd.agents.base import Agent, AgentContext
from hafd.agents.command import CommandAgent
from hafd.agents.drbd import DrbdAgent
from hafd.agents.filesystem import FilesystemAgent
from hafd.agents.ipaddr import IpaddrAgent
from hafd.agents.ocf import OcfAgent
from hafd.agents.process import ProcessAgent
from hafd.agents.service import ServiceAgent
from hafd.core.config import Resource

AGENTS: dict[str, type[Agent]] = {
    "drbd": DrbdAgent,
    "filesystem": FilesystemAgent,
    "ipaddr": IpaddrAgent,
    "service": ServiceAgent,
    "process": ProcessAgent,
    "command": CommandAgent,
    "ocf": OcfAgent,
}


def make_agent(resource: Resource, ctx: AgentContext) -> Agent:
    return AGENTS[resource.type](resource, ctx)
