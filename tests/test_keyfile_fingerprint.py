"""The heartbeat key is refused when others can read it; the config hash ignores node-local keys."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from hafd.core.configload import load_config
from hafd.core.fingerprint import config_hash
from hafd.io.keyfile import KeyFileError, load_key

ROOT = Path(__file__).resolve().parent.parent


def write_key(path: Path, mode: int, data: bytes = b"0123456789abcdef0123456789abcdef\n") -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def test_key_with_mode_0600_loads_stripped(tmp_path: Path) -> None:
    assert load_key(str(write_key(tmp_path / "k", 0o600))) == b"0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(KeyFileError, match=f"readable by others \\(mode {mode:04o}\\); run chmod 600"):
        load_key(str(write_key(tmp_path / "k", mode)))


def test_missing_short_and_symlinked_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist .*hafctl keygen"):
        load_key(str(tmp_path / "nope"))
    with pytest.raises(KeyFileError, match="too short"):
        load_key(str(write_key(tmp_path / "short", 0o600, b"abc\n")))
    (tmp_path / "link").symlink_to(write_key(tmp_path / "real", 0o600))
    with pytest.raises(KeyFileError, match="cannot open"):
        load_key(str(tmp_path / "link"))


def test_config_hash_ignores_local_keys_but_not_cluster_ones() -> None:
    cfg = load_config(str(ROOT / "config" / "hafd.yaml"), node="nodeone")
    base = config_hash(cfg)
    assert config_hash(dataclasses.replace(cfg, local_node="nodetwo")) == base
    local = dataclasses.replace(cfg.cluster, state_dir="/elsewhere", control_socket="/run/x.sock")
    assert config_hash(dataclasses.replace(cfg, cluster=local)) == base
    assert config_hash(dataclasses.replace(cfg, programs=dataclasses.replace(cfg.programs, drbdadm="/opt/drbdadm"))) == base
    timing = dataclasses.replace(cfg.cluster, deadtime=0.5)
    assert config_hash(dataclasses.replace(cfg, cluster=timing)) != base
    res = dict(cfg.resources)
    res["dhcpd"] = dataclasses.replace(res["dhcpd"], migration_threshold=5)
    assert config_hash(dataclasses.replace(cfg, resources=res)) != base
