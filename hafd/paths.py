"""Default paths, in a module with no imports: `hafctl fence-peer` runs inside DRBD's
state change, so the CLI must start fast and not pull in the config model for them."""

DEFAULT_CONFIG_PATH = "/etc/hafd/hafd.yaml"
DEFAULT_SOCKET = "/run/hafd/hafd.sock"
