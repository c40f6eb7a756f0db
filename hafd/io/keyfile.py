"""Read the cluster's shared heartbeat key, refusing one others can read.

A key readable by group or others lets any local user forge heartbeats and move
the service, so hafd refuses to start rather than warn.
"""

from __future__ import annotations

import os
import stat


class KeyFileError(Exception):
    pass


def load_key(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist (create it with `hafctl keygen {path}`)") from None
    except OSError as e:
        raise KeyFileError(f"cannot open key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {path}"
            )
        data = os.read(fd, 4096).strip()
    finally:
        os.close(fd)
    if len(data) < 16:
        raise KeyFileError(f"key file {path} is too short ({len(data)} bytes); generate one with `hafctl keygen`")
    return data
