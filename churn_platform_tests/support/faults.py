"""A writer that dies mid-write: files opened for writing under a folder accept some bytes, then
the write fails (as on a full disk, or when the process is killed halfway through a large file).

Every Python-level way of writing a local file goes through ``open`` (``open()``, ``os.fdopen``,
``pathlib``, fsspec's local files), so the fault hits whatever a writer does; what is on disk
afterwards, and what a reader of the final path saw at the moment of the fault, is the writer's
doing.
"""

import builtins
import errno
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

_REAL_OPEN = builtins.open
_MISSING = None  # what a reader saw at a path that did not exist


@dataclass
class DyingDisk:
    root: str
    budget: int  # bytes each file opened for writing accepts before its write fails
    spare_files: int = 0  # files written completely before the fault starts biting
    watch: Sequence[str] = ()  # final paths whose content a reader sees at the fault
    faults: int = 0
    opened: list[str] = field(default_factory=list)  # files opened for writing under root
    seen_at_fault: list[dict[str, bytes | None]] = field(default_factory=list)

    def covers(self, name: str) -> bool:
        return os.path.realpath(name).startswith(self.root + os.sep)

    def snapshot(self) -> dict[str, bytes | None]:
        seen = {}
        for path in self.watch:
            try:
                with _REAL_OPEN(path, "rb") as handle:
                    seen[path] = handle.read()
            except FileNotFoundError:
                seen[path] = _MISSING
        return seen


class _DyingFile:
    def __init__(self, inner, disk: DyingDisk, dies: bool):
        self._inner, self._disk, self._dies, self._written = inner, disk, dies, 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        room = self._disk.budget - self._written
        if not self._dies or len(view) <= room:
            self._written += len(view)
            return self._inner.write(view)
        self._inner.write(view[: max(room, 0)])
        self._inner.flush()
        self._disk.faults += 1
        self._disk.seen_at_fault.append(self._disk.snapshot())
        raise OSError(errno.ENOSPC, "No space left on device (simulated: the writer died mid-write)")

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self):
        return iter(self._inner)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@contextmanager
def dying_disk(
    monkeypatch,
    root,
    budget: int,
    spare_files: int = 0,
    watch: Sequence[os.PathLike | str] = (),
) -> Iterator[DyingDisk]:
    """Within the block, each file opened for writing under ``root`` fails after ``budget`` bytes
    (the first ``spare_files`` such files excepted)."""
    disk = DyingDisk(os.path.realpath(os.fspath(root)), budget, spare_files, [os.fspath(p) for p in watch])

    def faulty_open(file, mode="r", *args, **kwargs):
        handle = _REAL_OPEN(file, mode, *args, **kwargs)
        if not any(flag in mode for flag in "wax+"):
            return handle
        name = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.fspath(file)
        if not disk.covers(name):
            return handle
        disk.opened.append(name)
        return _DyingFile(handle, disk, dies=len(disk.opened) > disk.spare_files)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", faulty_open)
        patch.setattr(io, "open", faulty_open)
        yield disk


def files_under(root) -> list[str]:
    """Every file below ``root`` (relative paths, sorted), hidden and temporary ones included."""
    root = os.fspath(root)
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root)
        for name in names
    )
