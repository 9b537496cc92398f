"""An application master that uses Pangu under its own identity: writes ``ALLOWED/out`` (granted) and tries
``DENIED/out`` (not granted). Exit 0 when the first worked and the second was refused; else 3 with the reason."""

from __future__ import annotations

import asyncio
import sys

from feitian.errors import PermissionDeniedError
from feitian.sched import AppEnvironment


async def main(allowed: str, denied: str) -> int:
    env = AppEnvironment.from_env()
    if not env.secured:
        print("no identity", file=sys.stderr)
        return 3
    rpc = env.rpc_client()
    try:
        dfs = env.dfs(rpc)
        await dfs.write_file(f"{allowed}/out", f"written by {env.app_id}".encode(), replication=1)
        try:
            await dfs.write_file(f"{denied}/out", b"must not exist", replication=1)
        except PermissionDeniedError:
            return 0
        print(f"{denied}/out was written", file=sys.stderr)
        return 3
    finally:
        await rpc.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
