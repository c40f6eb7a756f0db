"""Shared pytest set-up. Keep it small: each test module owns its fixtures."""

import structlog


def pytest_configure(config: object) -> None:
    # Cached loggers would ignore capture_logs(); tests must see every event.
    structlog.configure(cache_logger_on_first_use=False)
