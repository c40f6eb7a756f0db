#!/usr/bin/env python3
"""A test resource: a marker file in $HAFD_TEST_NODE_DIR, with every start/stop logged
(name, action, wall time) to $HAFD_TEST_NODE_DIR/events so tests can check ordering
and dual-active windows. Monitor: exit 0 running, 7 stopped (the command agent's rule)."""
import os
import sys
import time

name, action = sys.argv[1], sys.argv[2]
d = os.environ["HAFD_TEST_NODE_DIR"]
marker = os.path.join(d, f"{name}.running")
if action == "monitor":
    sys.exit(0 if os.path.exists(marker) else 7)
if action == "start":
    open(marker, "w").close()
elif action == "stop":
    if os.path.exists(marker):
        os.unlink(marker)
with open(os.path.join(d, "events"), "a") as f:
    f.write(f"{time.time():.6f} {name} {action}\n")
