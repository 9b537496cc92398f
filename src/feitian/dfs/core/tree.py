"""The directory tree: inodes, path resolution, mkdir, file creation, atomic rename and delete.

Inodes make rename O(1) for a file and O(size of the subtree) for a directory (only to check the bounds of
the paths it will create). Every operation checks everything first and mutates after, so a refused operation
leaves the tree exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.paths import join_path, split_path
from feitian.dfs.core.records import ROOT_INODE, DirNode, FileNode
from feitian.errors import (
    AlreadyExistsError,
    AlreadyExistsReason,
    ConflictError,
    ConflictReason,
    InvalidArgumentError,
    NotFoundError,
    NotFoundReason,
)

__all__ = ["Node", "Tree"]

Node = DirNode | FileNode


def _is_a_directory(op: str, path: str) -> ConflictError:
    return ConflictError(f"{op} {path}: is a directory", path=path, reason=ConflictReason.IS_A_DIRECTORY)


def _not_a_directory(op: str, path: str, component: str) -> ConflictError:
    return ConflictError(
        f"{op} {path}: {component} is a file, not a directory",
        path=path,
        component=component,
        reason=ConflictReason.NOT_A_DIRECTORY,
    )


class Tree:
    def __init__(self, config: NamespaceConfig) -> None:
        self.config = config
        self.nodes: dict[int, Node] = {ROOT_INODE: DirNode(ROOT_INODE, 0, "", {}, 0, 0)}
        self.next_inode = ROOT_INODE + 1

    # -- lookups -------------------------------------------------------------------------------------------------

    def lookup(self, op: str, path: str, segments: tuple[str, ...]) -> Node | None:
        """The node at ``segments``; None if the last component is missing. NotFoundError for a missing parent,
        ConflictError when a parent is a file."""
        node: Node = self.nodes[ROOT_INODE]
        for depth, name in enumerate(segments):
            if isinstance(node, FileNode):
                raise _not_a_directory(op, path, join_path(segments[:depth]))
            child = node.children.get(name)
            if child is None:
                if depth < len(segments) - 1:
                    raise NotFoundError(
                        f"{op} {path}: parent directory {join_path(segments[: depth + 1])} does not exist", path=path
                    )
                return None
            node = self.nodes[child]
        return node

    def resolve(self, op: str, path: str) -> tuple[tuple[str, ...], Node]:
        segments = split_path(op, path, self.config)
        node = self.lookup(op, path, segments)
        if node is None:
            raise NotFoundError(f"{op} {path}: no such file or directory", path=path)
        return segments, node

    def resolve_file(self, op: str, path: str) -> FileNode:
        _, node = self.resolve(op, path)
        if isinstance(node, DirNode):
            raise _is_a_directory(op, path)
        return node

    def resolve_dir(self, op: str, path: str) -> DirNode:
        _, node = self.resolve(op, path)
        if isinstance(node, FileNode):
            raise ConflictError(f"{op} {path}: not a directory", path=path, reason=ConflictReason.NOT_A_DIRECTORY)
        return node

    def path_of(self, inode: int) -> str:
        parts: list[str] = []
        node = self.nodes[inode]
        while node.inode != ROOT_INODE:
            parts.append(node.name)
            node = self.nodes[node.parent]
        return join_path(tuple(reversed(parts)))

    def file(self, op: str, file_id: int) -> FileNode:
        node = self.nodes.get(file_id)
        if not isinstance(node, FileNode):
            raise NotFoundError(f"{op}: file {file_id} does not exist (deleted or replaced)", file_id=file_id)
        return node

    def walk(self, node: Node) -> Iterator[Node]:
        """``node`` and everything below it."""
        stack = [node]
        while stack:
            current = stack.pop()
            yield current
            if isinstance(current, DirNode):
                stack.extend(self.nodes[i] for i in current.children.values())

    # -- creation ------------------------------------------------------------------------------------------------

    def _check_room(self, op: str, path: str, parent: DirNode | None, new_nodes: int) -> None:
        if len(self.nodes) + new_nodes > self.config.max_files:
            raise InvalidArgumentError(
                f"{op} {path}: the namespace holds max_files {self.config.max_files} files and directories",
                path=path,
                limit=self.config.max_files,
            )
        if parent is not None and len(parent.children) >= self.config.max_entries_per_dir:
            raise InvalidArgumentError(
                f"{op} {path}: directory {self.path_of(parent.inode)} holds max_entries_per_dir "
                f"{self.config.max_entries_per_dir} entries",
                path=path,
                limit=self.config.max_entries_per_dir,
            )

    def _prepare_parent(self, op: str, path: str, segments: tuple[str, ...], parents: bool) -> tuple[DirNode, int]:
        """The deepest existing ancestor of ``segments`` and how many directories are missing below it."""
        node: Node = self.nodes[ROOT_INODE]
        for depth, name in enumerate(segments[:-1]):
            if isinstance(node, FileNode):
                raise _not_a_directory(op, path, join_path(segments[:depth]))
            child = node.children.get(name)
            if child is None:
                if not parents:
                    raise NotFoundError(
                        f"{op} {path}: parent directory {join_path(segments[: depth + 1])} does not exist",
                        path=path,
                        hint="create the parent first, or pass parents=True",
                        reason=NotFoundReason.NO_PARENT,
                    )
                return node, len(segments) - 1 - depth
            node = self.nodes[child]
        if isinstance(node, FileNode):
            raise _not_a_directory(op, path, join_path(segments[:-1]))
        return node, 0

    def _make_dirs(self, base: DirNode, names: tuple[str, ...], now_ns: int) -> DirNode:
        for name in names:
            child = DirNode(self.next_inode, base.inode, name, {}, now_ns, now_ns)
            self.next_inode += 1
            self.nodes[child.inode] = child
            base.children[name] = child.inode
            base.mtime_ns = now_ns
            base = child
        return base

    def mkdir(self, op: str, path: str, parents: bool, now_ns: int) -> tuple[int, bool]:
        segments = split_path(op, path, self.config)
        if not segments:
            if parents:
                return ROOT_INODE, False
            raise AlreadyExistsError(f"{op} /: the root directory already exists", path=path)
        base, missing = self._prepare_parent(op, path, segments, parents)
        if missing == 0:
            existing = base.children.get(segments[-1])
            if existing is not None:
                if parents and isinstance(self.nodes[existing], DirNode):
                    return existing, False
                kind = "directory" if isinstance(self.nodes[existing], DirNode) else "file"
                raise AlreadyExistsError(f"{op} {path}: a {kind} already exists there", path=path)
        self._check_room(op, path, base, missing + 1)
        created = self._make_dirs(base, segments[len(segments) - missing - 1 :], now_ns)
        return created.inode, True

    def prepare_file(
        self, op: str, path: str, parents: bool, overwrite: bool
    ) -> tuple[tuple[str, ...], DirNode, int, FileNode | None]:
        """Check that a file can be created at ``path``: (segments, deepest parent, missing dirs, file replaced)."""
        segments = split_path(op, path, self.config)
        if not segments:
            raise _is_a_directory(op, path)
        base, missing = self._prepare_parent(op, path, segments, parents)
        replaced: FileNode | None = None
        if missing == 0:
            existing = base.children.get(segments[-1])
            if existing is not None:
                node = self.nodes[existing]
                if isinstance(node, DirNode):
                    raise _is_a_directory(op, path)
                if not overwrite:
                    raise AlreadyExistsError(
                        f"{op} {path}: file already exists", path=path, hint="pass overwrite=True to replace it"
                    )
                replaced = node
        if replaced is None:
            self._check_room(op, path, base, missing + 1)
        return segments, base, missing, replaced

    def add_file(
        self, segments: tuple[str, ...], base: DirNode, missing: int, make: Callable[[int, int], FileNode], now_ns: int
    ) -> FileNode:
        """Create the missing parents and the file ``make(inode, parent_inode)`` (after :meth:`prepare_file`)."""
        parent = self._make_dirs(base, segments[len(segments) - missing - 1 : -1], now_ns)
        old = parent.children.get(segments[-1])
        if old is not None:
            del self.nodes[old]
        file = make(self.next_inode, parent.inode)
        self.next_inode += 1
        self.nodes[file.inode] = file
        parent.children[segments[-1]] = file.inode
        parent.mtime_ns = now_ns
        return file

    # -- rename and delete ---------------------------------------------------------------------------------------

    def prepare_rename(
        self, op: str, src: str, dst: str, overwrite: bool
    ) -> tuple[Node, DirNode, str, FileNode | None]:
        """Check a rename: (node moved, destination parent, new name, destination file replaced)."""
        src_segments, node = self.resolve(op, src)
        dst_segments = split_path(op, dst, self.config)
        if not src_segments:
            raise InvalidArgumentError(f"{op} {src} -> {dst}: the root directory cannot be renamed", path=src)
        if not dst_segments:
            raise AlreadyExistsError(f"{op} {src} -> {dst}: the root directory already exists", path=dst)
        if (
            isinstance(node, DirNode)
            and dst_segments[: len(src_segments)] == src_segments
            and dst_segments != src_segments
        ):
            raise InvalidArgumentError(
                f"{op} {src} -> {dst}: cannot move a directory inside itself", path=src, destination=dst
            )
        parent = self.lookup(op, dst, dst_segments[:-1])
        if parent is None:
            raise NotFoundError(
                f"{op} {src} -> {dst}: destination directory {join_path(dst_segments[:-1])} does not exist", path=dst
            )
        if isinstance(parent, FileNode):
            raise _not_a_directory(op, dst, join_path(dst_segments[:-1]))
        replaced: FileNode | None = None
        existing_id = parent.children.get(dst_segments[-1])
        if existing_id is not None and existing_id != node.inode:
            existing = self.nodes[existing_id]
            if isinstance(existing, DirNode):
                raise AlreadyExistsError(
                    f"{op} {src} -> {dst}: destination is an existing directory",
                    path=dst,
                    reason=AlreadyExistsReason.DIR_EXISTS,
                )
            if isinstance(node, DirNode):
                raise ConflictError(f"{op} {src} -> {dst}: cannot replace a file with a directory", path=dst)
            if not overwrite:
                raise AlreadyExistsError(
                    f"{op} {src} -> {dst}: destination file exists", path=dst, hint="pass overwrite=True to replace it"
                )
            replaced = existing
        if existing_id is None and parent.inode != node.parent:
            self._check_room(op, dst, parent, 0)
        if isinstance(node, DirNode):
            self._check_moved_paths(op, src, dst, node, dst_segments)
        return node, parent, dst_segments[-1], replaced

    def _check_moved_paths(self, op: str, src: str, dst: str, node: DirNode, dst_segments: tuple[str, ...]) -> None:
        base_bytes = len(join_path(dst_segments).encode("utf-8", "surrogatepass"))
        stack: list[tuple[Node, int, int]] = [(node, len(dst_segments), base_bytes)]
        while stack:
            current, depth, size = stack.pop()
            if depth > self.config.max_depth or size > self.config.max_path_bytes:
                raise InvalidArgumentError(
                    f"{op} {src} -> {dst}: a path below would exceed max_depth {self.config.max_depth} or "
                    f"max_path_bytes {self.config.max_path_bytes}",
                    path=src,
                )
            if isinstance(current, DirNode):
                for name, child in current.children.items():
                    stack.append((self.nodes[child], depth + 1, size + 1 + len(name.encode("utf-8", "surrogatepass"))))

    def move(self, node: Node, parent: DirNode, name: str, now_ns: int) -> None:
        """Carry out a rename checked by :meth:`prepare_rename` (the replaced file, if any, is dropped here)."""
        old_parent = self.nodes[node.parent]
        assert isinstance(old_parent, DirNode)
        old = parent.children.get(name)
        if old is not None and old != node.inode:
            del self.nodes[old]
        del old_parent.children[node.name]
        old_parent.mtime_ns = now_ns
        node.parent, node.name = parent.inode, name
        parent.children[name] = node.inode
        parent.mtime_ns = now_ns

    def prepare_delete(self, op: str, path: str, recursive: bool) -> tuple[Node, list[Node]]:
        segments, node = self.resolve(op, path)
        if not segments:
            raise InvalidArgumentError(f"{op} /: the root directory cannot be deleted", path=path)
        if isinstance(node, DirNode) and node.children and not recursive:
            raise ConflictError(
                f"{op} {path}: directory is not empty ({len(node.children)} entries)",
                path=path,
                reason=ConflictReason.NOT_EMPTY,
                hint="pass recursive=True to delete the subtree",
            )
        return node, list(self.walk(node))

    def remove(self, node: Node, subtree: list[Node], now_ns: int) -> None:
        parent = self.nodes[node.parent]
        assert isinstance(parent, DirNode)
        del parent.children[node.name]
        parent.mtime_ns = now_ns
        for each in subtree:
            del self.nodes[each.inode]
