"""hafd: a small high-availability failover daemon."""

__version__ = "0.1.0"
