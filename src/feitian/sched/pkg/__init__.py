"""Packages (FUXI-6): versioned, content-addressed archives in Pangu with their records in Nuwa, and the cache
of one machine that Tubo starts processes from; docs/pkg.md.

::

    store = PackageStore(coord, dfs)                   # a feitian.coord.CoordClient and a feitian.dfs.DfsClient
    ref = await store.upload("app", Path("build/"))    # -> PackageRef(name, version, digest, size, ...)
    ref = await store.resolve("app") / resolve("app@3")
    refs = await store.list() / list("app")
    removed = await store.remove("app@3")              # blob deleted once no version refers to it
    async for piece in store.open_blob(ref.digest): ...

    cache = PackageCache(root, max_bytes, store.open_blob)   # on each machine
    await cache.open()
    async with cache.use(ref) as path: ...                   # downloaded once, verified, read-only, pinned
"""

from feitian.sched.pkg.archive import PackageLimits, PackInfo, pack, unpack
from feitian.sched.pkg.cache import CachedPackage, Fetch, PackageCache
from feitian.sched.pkg.ref import PackageRef, parse_spec, validate_name
from feitian.sched.pkg.store import DEFAULT_ROOT, PackageStore

__all__ = [
    "DEFAULT_ROOT",
    "CachedPackage",
    "Fetch",
    "PackInfo",
    "PackageCache",
    "PackageLimits",
    "PackageRef",
    "PackageStore",
    "pack",
    "parse_spec",
    "unpack",
    "validate_name",
]
