"""Finding the local node's addresses by asking the kernel (bind), without changing the host."""

from __future__ import annotations

import socket

import pytest

from hafd.io.localaddr import configured_addresses


def test_loopback_is_local_and_test_net_is_not() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never configured on a real host.
    assert configured_addresses(["127.0.0.1", "192.0.2.1"]) == {"127.0.0.1"}


def test_candidates_come_back_as_given() -> None:
    assert configured_addresses(iter(["127.0.0.1", "127.0.0.1"])) == {"127.0.0.1"}


def test_invalid_candidates_are_not_local() -> None:
    assert configured_addresses(["", "localhost", "nodeone", "127.0.0.1/8", "300.1.1.1"]) == set()


def _ipv6_loopback_usable() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_usable(), reason="no IPv6 loopback on this host")
def test_ipv6() -> None:
    # 2001:db8::/32 is the IPv6 documentation prefix.
    assert configured_addresses(["::1", "2001:db8::1"]) == {"::1"}


def test_port_in_use_does_not_matter() -> None:
    # The daemon's own heartbeat socket may already hold the port; we bind port 0.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        assert configured_addresses(["127.0.0.1"]) == {"127.0.0.1"}


def test_feeds_the_config_loader() -> None:
    from hafd.core.configload import parse_config

    text = "cluster: {name: c}\nnodes:\n  one: {links: [192.0.2.1]}\n  two: {links: [127.0.0.1]}\n"
    links = ["192.0.2.1", "127.0.0.1"]
    config = parse_config(text, local_addresses=configured_addresses(links))
    assert config.local_node == "two"
