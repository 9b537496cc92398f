"""Job files in and out: JSON or YAML text into a :class:`~feitian.job.spec.model.JobSpec`, and back.

Loading happens in two steps, so that a file with several mistakes gets them all named:

1. the text is parsed (JSON by msgspec, YAML by PyYAML's safe loader); a syntax error is one
   ``InvalidArgumentError`` naming its line and column (its fields ``line``, ``column``). YAML aliases
   (``*name``) are refused (a few lines of them could expand to gigabytes) and so is YAML 1.1's reading of
   ``1:1`` as the base-60 number 61: in a job file it is the string ``"1:1"``. The text is at most
   :data:`~feitian.job.spec.model.MAX_FILE_BYTES`.
2. the parsed document is checked field by field against the Structs — every field of the job, of each task and
   pipe, and of the objects inside them (code, resources, workers, output, key, defaults) on its own — so a
   wrong type, an unknown or missing field or a number out of its bound does not hide another. Every such
   problem is listed, with its path, in one ``ConfigError``.

The meaning (names, references, patterns, cycles, ...) is checked afterwards by :mod:`feitian.job.spec.check`.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from feitian.errors import ConfigError, InvalidArgumentError, MessageTooLargeError
from feitian.job.spec.model import MAX_FILE_BYTES, MAX_PIPES, MAX_TASKS, JobSpec, PipeSpec, TaskSpec

__all__ = ["decode_job", "guess_format", "job_to_dict", "job_to_json", "job_to_yaml", "read_job"]

FileFormat = Literal["json", "yaml"]
_BYTE = re.compile(r"\(byte (\d+)\)")


def _syntax_error(message: str, *, line: int, column: int, hint: str | None = None) -> InvalidArgumentError:
    """A job file that is no JSON or YAML document: an ``InvalidArgumentError`` whose fields ``line`` and
    ``column`` (from 1; 0 when unknown) say where."""
    return InvalidArgumentError(message, hint=hint, line=line, column=column)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without base-60 numbers."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a job file", event.start_mark
            )
        return super().compose_node(parent, index)


def _int_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if isinstance(text, str) and ":" in text:
        return text  # YAML 1.1 base 60 ("1:1" -> 61): in a job file, the pattern "1:1"
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _float_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if isinstance(text, str) and ":" in text:
        return text
    return yaml.SafeLoader.construct_yaml_float(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _int_or_text)
_Loader.add_constructor("tag:yaml.org,2002:float", _float_or_text)
# YAML 1.1 reads 1e-3 (no dot) as text; YAML 1.2 and JSON read it as a number, and so does a job file.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def guess_format(name: str, data: bytes) -> FileFormat:
    """``.json`` -> JSON, ``.yaml``/``.yml`` -> YAML; otherwise JSON when the text starts with ``{``."""
    lower = name.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if data.lstrip()[:1] == b"{" else "yaml"


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return line, column


def _parse(data: bytes, fmt: FileFormat, source: str) -> Any:
    if fmt == "json":
        try:
            return msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            found = _BYTE.search(str(exc))
            line, column = _line_col(data, int(found.group(1))) if found else (0, 0)
            text = _BYTE.sub("", str(exc)).strip()
            raise _syntax_error(
                f"{source}:{line}:{column}: {text}", hint="the file must be one JSON object", line=line, column=column
            ) from None
        except RecursionError:
            raise _syntax_error(f"{source}: nested too deeply", line=0, column=0) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _line_col(data, exc.start)
        raise _syntax_error(f"{source}:{line}:{column}: not UTF-8 text", line=line, column=column) from None
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        raise _syntax_error(
            f"{source}:{line}:{column}: {exc.problem or exc.context}", line=line, column=column
        ) from None
    except yaml.YAMLError as exc:
        raise _syntax_error(f"{source}: {exc}", line=0, column=0) from None
    except RecursionError:
        raise _syntax_error(f"{source}: nested too deeply", line=0, column=0) from None


def _convert(value: Any, type_: Any, where: str, out: list[str]) -> Any:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, sep, at = text.rpartition(" - at `$")
        if sep:
            out.append(f"{where}{at.rstrip('`')}: {message}")
        else:
            out.append(f"{where}: {text}")
        return None
    except RecursionError:
        out.append(f"{where}: nested too deeply")
        return None


def _struct_of(type_: Any) -> type[msgspec.Struct] | None:
    """The Struct class of a field typed ``S`` or ``S | None`` (``Annotated`` stripped), else None."""
    if typing.get_origin(type_) is typing.Annotated:
        type_ = typing.get_args(type_)[0]
    if typing.get_origin(type_) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(type_) if a is not type(None)]
        type_ = args[0] if len(args) == 1 else None
    return type_ if isinstance(type_, type) and issubclass(type_, msgspec.Struct) else None


def _convert_struct(value: Any, cls: type[msgspec.Struct], where: str, out: list[str]) -> Any:
    """``value`` as a ``cls``, field by field: every unknown field, missing field and wrong value is listed (a
    nested Struct is checked the same way), not only the first."""
    if not isinstance(value, dict):
        return _convert(value, cls, where, out)
    before = len(out)
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    values: dict[str, Any] = {}
    prefix = f"{where}." if where else ""
    for key, item in value.items():
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            out.append(f"{prefix}{key}: unknown field (known: {', '.join(fields)})")
            continue
        inner = _struct_of(field.type)
        if inner is not None and isinstance(item, dict):
            values[field.name] = _convert_struct(item, inner, prefix + key, out)
        elif field.name in _LISTS.get(cls, {}):
            values[field.name] = _convert_list(prefix + key, item, *_LISTS[cls][field.name], out)
        else:
            values[field.name] = _convert(item, field.type, prefix + key, out)
    for key, field in fields.items():
        if field.required and key not in value:
            out.append(f"{prefix}{key}: missing (required)")
    return cls(**values) if len(out) == before else None


def _convert_list(where: str, value: Any, kind: type[msgspec.Struct], low: int, high: int, out: list[str]) -> Any:
    if not isinstance(value, list):
        return _convert(value, tuple[kind, ...], where, out)  # type: ignore[valid-type]
    if not low <= len(value) <= high:
        out.append(f"{where}: {len(value)} entries, must be {low}..{high}")
        return ()
    return tuple(_convert_struct(item, kind, f"{where}[{i}]", out) for i, item in enumerate(value))


_LISTS: dict[type[msgspec.Struct], dict[str, tuple[type[msgspec.Struct], int, int]]] = {
    JobSpec: {"tasks": (TaskSpec, 1, MAX_TASKS), "pipes": (PipeSpec, 0, MAX_PIPES)}
}


def decode_job(data: bytes | str, *, fmt: FileFormat | None = None, source: str = "<job>") -> JobSpec:
    """A job description from JSON or YAML text (``fmt`` guessed from ``source``'s suffix and the text when not
    given). Raises ``InvalidArgumentError`` with ``line`` and ``column`` (not a document),
    ``MessageTooLargeError`` (over MAX_FILE_BYTES) or ``ConfigError`` listing every problem of form (types,
    unknown and missing fields, bounds of the schema), each with its path."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_FILE_BYTES:
        raise MessageTooLargeError(
            f"{source}: {len(raw)} bytes, a job file is at most {MAX_FILE_BYTES}", limit=MAX_FILE_BYTES, size=len(raw)
        )
    doc = _parse(raw, fmt or guess_format(source, raw), source)
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a job file is one object (name, tasks, pipes, ...), not {type(doc).__name__}")
    problems: list[str] = []
    try:
        job = _convert_struct(doc, JobSpec, "", problems)
    except RecursionError:
        problems.append("nested too deeply")
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", problems=problems)
    assert isinstance(job, JobSpec)
    return job


def read_job(path: str | Path) -> JobSpec:
    """:func:`decode_job` of a file (at most MAX_FILE_BYTES are read). OS errors are left to the caller."""
    p = Path(path)
    with p.open("rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return decode_job(data, source=str(p))


def job_to_dict(job: JobSpec) -> dict[str, Any]:
    """Plain JSON values (fields not given left out); ``decode_job`` of them gives ``job`` again."""
    out: dict[str, Any] = msgspec.to_builtins(job)
    return out


def job_to_json(job: JobSpec) -> str:
    return msgspec.json.format(msgspec.json.encode(job)).decode() + "\n"


def job_to_yaml(job: JobSpec) -> str:
    text: str = yaml.safe_dump(job_to_dict(job), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text
