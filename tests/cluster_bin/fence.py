#!/usr/bin/env python3
"""A test fence agent: 'power off' the peer by killing its hafd and its resources
(PIDs the test recorded under $HAFD_TEST_ROOT/PEER), then report success."""
import json
import os
import signal
import sys
import time

peer = sys.argv[1]
root = os.environ["HAFD_TEST_ROOT"]
d = os.path.join(root, peer)
pids = []
for name in os.listdir(d):
    if name.endswith(".pidlist"):
        pids += [int(x) for x in open(os.path.join(d, name)).read().split()]
state = os.path.join(d, "state")
for name in os.listdir(state) if os.path.isdir(state) else []:
    if name.endswith(".pid"):
        try:
            pids.append(int(json.load(open(os.path.join(state, name)))["pid"]))
        except (ValueError, KeyError, OSError):
            pass
for pid in pids:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
for name in os.listdir(d):
    if name.endswith(".running"):
        os.unlink(os.path.join(d, name))
with open(os.path.join(root, "fence.log"), "a") as f:
    f.write(f"{time.time():.6f} fenced {peer}\n")
