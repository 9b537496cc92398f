"""Deleting directories without blocking the caller: a directory is renamed into the trash at once (a rename in
the same file system) and deleted a bounded number of entries per call of :meth:`Trash.delete_some`."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from feitian.runtime.files import os_error

__all__ = ["DELETE_BUDGET", "Trash"]

DELETE_BUDGET = 512  # files and directories deleted per call of delete_some


class Trash:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def put(self, path: Path) -> None:
        """Move ``path`` (a file or directory, missing is fine) into the trash; it is gone from its place now."""
        target = self.directory / f"{path.name}.{uuid.uuid4().hex[:16]}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(exc, "rename", path) from exc

    def delete_some(self, budget: int = DELETE_BUDGET) -> int:
        """Delete up to ``budget`` entries of the trash (deepest first); returns how many were deleted."""
        done = 0
        for top, dirs, files in os.walk(self.directory, topdown=False):
            for name in files:
                if done >= budget:
                    return done
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(top, name))
                done += 1
            for name in dirs:
                path = os.path.join(top, name)
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    with contextlib.suppress(FileNotFoundError, OSError):
                        os.rmdir(path)
                done += 1
            if done >= budget:
                break
        return done

    def empty(self) -> bool:
        return not any(self.directory.iterdir())
