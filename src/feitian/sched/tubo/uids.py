"""One uid per application (optional): when Tubo runs as root with ``app_uids=(first, count)``, each application
gets its own uid (and gid, the same number) from that range while it has records on this machine, and its
processes run as that uid (``setpriv --reuid --regid --clear-groups``), their work dirs owned by it. Processes
of different applications then cannot signal each other or read each other's work dirs.

The mapping is not stored apart: each process's record holds its uid, and a restarted Tubo rebuilds the mapping
from them. A uid is free again once no record of its application is left (``forget``), so it may go to another
application later; with cgroups nothing of the old one is left running by then.
"""

from __future__ import annotations

import os
import shutil

from feitian.errors import ConfigError, OverloadedError

__all__ = ["AppUids"]

MAX_UID = 2**32 - 2  # (uid_t)-1 means "unchanged"


class AppUids:
    def __init__(self, uid_range: tuple[int, int]) -> None:
        first, count = uid_range
        problems = []
        if not (isinstance(first, int) and isinstance(count, int) and first > 0 and count > 0):
            problems.append(f"app_uids {uid_range!r}: (first uid > 0, count > 0)")
        elif first + count - 1 > MAX_UID:
            problems.append(f"app_uids {uid_range!r}: the range goes past uid {MAX_UID}")
        if os.geteuid() != 0:
            problems.append("app_uids needs Tubo to run as root")
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            problems.append("app_uids needs setpriv (util-linux) on PATH")
        if problems:
            raise ConfigError("tubo: cannot run applications under their own uids", problems=problems)
        assert setpriv is not None
        self.first, self.count, self.setpriv = first, count, setpriv

    def assign(self, app_id: str, taken: dict[int, str]) -> int:
        """``taken`` maps the uids of existing records to their applications."""
        for uid, owner in taken.items():
            if owner == app_id and uid >= 0:
                return uid
        for uid in range(self.first, self.first + self.count):
            if uid not in taken:
                return uid
        raise OverloadedError(
            f"start for {app_id}: all {self.count} application uids from {self.first} are in use on this machine",
            hint="forget ended processes, or configure a larger app_uids range",
            limit=self.count,
        )

    def prefix(self, uid: int) -> list[str]:
        """The command that runs the rest of argv as ``uid`` (its own group, no supplementary groups)."""
        return [self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
