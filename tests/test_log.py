"""Logging set-up: JSON lines for journald, and no secret ever written."""

from __future__ import annotations

import io
import json
from typing import Iterator

import pytest
import structlog

from hafd.log import REDACTED, configure_logging


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.configure(cache_logger_on_first_use=False)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_utc_timestamps_and_level_filter() -> None:
    out = io.StringIO()
    configure_logging("auto", "info", cache=False, stream=out)  # a StringIO is not a tty: JSON
    log = structlog.get_logger("t")
    log.debug("too_chatty")
    log.info("role_changed", role="active", reason="peer lost")
    [event] = _lines(out)
    assert event["event"] == "role_changed" and event["reason"] == "peer lost" and event["level"] == "info"
    assert event["timestamp"].endswith("Z")


def test_secrets_are_redacted_even_nested_but_key_paths_are_kept() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", cache=False, stream=out)
    structlog.get_logger().info(
        "loaded", authkey="deadbeef", key_file="/etc/hafd/authkey", password="pw",
        cluster={"name": "dhcp", "hmac_key": "deadbeef", "inner": {"secret": "s"}},
    )
    text = out.getvalue()
    assert "deadbeef" not in text and '"pw"' not in text and '"s"' not in text
    [event] = _lines(out)
    assert event["authkey"] == REDACTED and event["password"] == REDACTED
    assert event["cluster"]["hmac_key"] == REDACTED and event["cluster"]["inner"]["secret"] == REDACTED
    assert event["key_file"] == "/etc/hafd/authkey" and event["cluster"]["name"] == "dhcp"


def test_tracebacks_are_data_without_locals() -> None:
    out = io.StringIO()
    configure_logging("json", "info", cache=False, stream=out)
    try:
        key = "deadbeef"  # noqa: F841 - a local that must not be logged
        raise ValueError("bad")
    except ValueError:
        structlog.get_logger().exception("failed")
    assert "deadbeef" not in out.getvalue()
    [event] = _lines(out)
    assert event["exception"][0]["exc_type"] == "ValueError"


def test_console_format() -> None:
    out = io.StringIO()
    configure_logging("console", "warning", cache=False, stream=out)
    structlog.get_logger().info("hidden")
    structlog.get_logger().warning("shown", secret="x")
    text = out.getvalue()
    assert "hidden" not in text and "shown" in text and "secret=<redacted>" in text


@pytest.mark.parametrize("fmt,level", [("xml", "info"), ("json", "loud")])
def test_bad_settings_are_clear_errors(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        configure_logging(fmt, level, cache=False)
