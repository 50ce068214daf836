"""bortlab.files, the one atomic writer: the rename happens only on success, a failure leaves the old file (or
directory) intact and no temporary behind, modes follow the umask, a directory replaces an existing one."""
from __future__ import annotations

import json
import os
import stat

import pytest

from bortlab.files import atomic_dir, atomic_path, write_atomic, write_json_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture()
def umask():
    """Run under a known umask (027: no access for others), restored afterwards."""
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_write_atomic_writes_text_bytes_and_json(tmp_path):
    path = write_atomic(tmp_path / "sub" / "a.txt", "héllo\n")       # parent folders are made
    assert path.read_text(encoding="utf-8") == "héllo\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "m.json", {"acc": 0.5, "path": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"acc": 0.5, "path": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "m.json", "sub"]


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "model.ckpt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"       # nothing visible before the block ends
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["model.ckpt"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_a_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, exc):
    target = tmp_path / "model.ckpt"
    target.write_text("old")
    with pytest.raises(exc):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise exc("interrupted")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.ckpt"]
    with pytest.raises(TypeError):                       # the write itself fails (not str or bytes)
        write_atomic(target, 12345)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["model.ckpt"]


def test_a_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "new.npz") as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_modes_follow_the_umask(tmp_path, umask):
    write_atomic(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"y")
    with open(tmp_path / "plain.txt", "w") as f:          # what a plain open gives under this umask
        f.write("z")
    assert _mode(tmp_path / "a.txt") == _mode(tmp_path / "b.bin") == _mode(tmp_path / "plain.txt") == 0o640
    with atomic_dir(tmp_path / "export") as d:
        (d / "config.json").write_text("{}")
        (d / "sub").mkdir(mode=0o700)
        (d / "sub" / "w.bin").write_bytes(b"w")
        os.chmod(d / "sub" / "w.bin", 0o600)               # as safetensors / mkstemp would leave it
    (tmp_path / "plain_dir").mkdir()
    assert _mode(tmp_path / "export") == _mode(tmp_path / "export" / "sub") == _mode(tmp_path / "plain_dir") == 0o750
    assert _mode(tmp_path / "export" / "config.json") == _mode(tmp_path / "export" / "sub" / "w.bin") == 0o640


def test_atomic_dir_replaces_an_existing_directory_as_a_whole(tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.bin").write_text("from an older export")
    (out / "config.json").write_text("old")
    with atomic_dir(out) as d:
        assert d.parent == tmp_path and d.is_dir() and not any(d.iterdir())
        (d / "config.json").write_text("new")
        assert (out / "config.json").read_text() == "old"
    assert sorted(os.listdir(out)) == ["config.json"] and (out / "config.json").read_text() == "new"
    assert os.listdir(tmp_path) == ["hf"]                  # neither the temporary nor the old copy is left


def test_atomic_dir_failure_keeps_the_old_directory(tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "config.json").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as d:
            (d / "config.json").write_text("half")
            raise RuntimeError("crash mid-export")
    assert os.listdir(out) == ["config.json"] and (out / "config.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["hf"]
    with atomic_dir(tmp_path / "fresh" / "hf") as d:       # a new target, parents made
        (d / "a").write_text("a")
    assert (tmp_path / "fresh" / "hf" / "a").read_text() == "a"


def test_atomic_dir_puts_the_old_directory_back_when_the_rename_fails(tmp_path, monkeypatch):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "config.json").write_text("old")
    real = os.replace

    def replace(src, dst):
        if os.fspath(dst) == os.fspath(out) and os.path.basename(os.fspath(src)).endswith(".tmp"):
            raise OSError("rename refused")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename refused"):
        with atomic_dir(out) as d:
            (d / "config.json").write_text("new")
    assert (out / "config.json").read_text() == "old"
    assert os.listdir(tmp_path) == ["hf"]
