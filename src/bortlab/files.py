"""One way to write a file (or a directory) so that a crash never leaves half of it where a whole one used to be.

Everything is written under a temporary name in the target's own directory (so the final rename stays on
one file system and is atomic), flushed to disk, given the mode a plain `open` / `mkdir` would have given it
under the current umask (mkstemp and mkdtemp make 0600 files and 0700 folders: submissions came out
unreadable to the group), and only then renamed over the target. On any failure the temporary is removed
and the old target, if any, is left as it was.

- `write_atomic(path, data)`: a file from a str or bytes value.
- `write_json_atomic(path, obj)`: the same for JSON (indent 2).
- `atomic_path(path)`: a context manager yielding a temporary file name, for writers that want a name
  (torch.save, numpy, Lightning's checkpoint IO); renamed over `path` when the block ends without error.
- `atomic_dir(path)`: the same for a directory (an exported checkpoint folder), replaced as a whole.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file under the current umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode `mkdir` gives a new directory under the current umask."""
    return 0o777 & ~_umask()


def _fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in `path` durable; best effort (some file systems refuse to open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: str | os.PathLike) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file name beside `path`; when the block ends without an exception the file written
    there is flushed to disk, given the umask's mode and renamed over `path`. On an exception it is removed
    and `path` keeps its old content. The temporary file already exists (empty) when the block starts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` (str as UTF-8, or bytes) to `path` through `atomic_path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one JSON line and flush it to disk: a bench's or a sweep's record of a finished job. A crash
    loses at most the line being written; callers running jobs in threads hold a lock around it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary directory beside `path`; when the block ends without an exception,
    everything in it is flushed to disk and given the umask's modes (files 0666 & ~umask, folders
    0777 & ~umask), and it replaces `path` as a whole: an existing `path` is first moved aside (a rename
    cannot replace a non-empty directory), then removed once the new one is in place; if the rename fails
    the old one is moved back. On an exception in the block the temporary directory is removed and `path`
    is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _settle_tree(tmp)
        aside = None
        if os.path.lexists(path):
            aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, aside / path.name)
        try:
            os.replace(tmp, path)
        except BaseException:
            if aside is not None:
                os.replace(aside / path.name, path)
                shutil.rmtree(aside, ignore_errors=True)
            raise
    except BaseException:
        _remove(tmp)
        raise
    _fsync_dir(path.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _settle_tree(folder: Path) -> None:
    """fsync every file under `folder` and give files and folders the umask's modes (links are left alone)."""
    fmode, dmode = file_mode(), dir_mode()
    for here, dirs, files in os.walk(folder):
        for name in files:
            p = os.path.join(here, name)
            if os.path.islink(p):
                continue
            _fsync_file(p)
            os.chmod(p, fmode)
        for name in dirs:
            p = os.path.join(here, name)
            if not os.path.islink(p):
                os.chmod(p, dmode)
        _fsync_dir(here)
    os.chmod(folder, dmode)
