"""Job files in and out (feitian.job.spec.load): the examples load and round-trip, a syntax error names its line
and column, every problem of form is listed with its path, and every bound has its documented result."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from feitian.errors import ConfigError, InvalidArgumentError, MessageTooLargeError
from feitian.job.core import MAX_INSTANCES, MAX_TASKS
from feitian.job.spec import (
    MAX_FILE_BYTES,
    JobSpec,
    decode_job,
    guess_format,
    job_to_dict,
    job_to_json,
    job_to_yaml,
    problems,
    read_job,
)
from feitian.job.spec.model import MAX_PIPES

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples" / "jobs").iterdir())


def form_problems(text: str, source: str = "job.yaml") -> list[str]:
    with pytest.raises(ConfigError) as e:
        decode_job(text, source=source)
    listed: list[str] = e.value.fields["problems"]
    return listed


def test_there_are_examples_for_wordcount_terasort_and_a_join() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"wordcount.yaml", "terasort.yaml", "join.json"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_without_problems_and_round_trip(path: Path) -> None:
    spec = read_job(path)
    assert problems(spec) == []
    assert decode_job(job_to_yaml(spec), source="again.yaml") == spec
    assert decode_job(job_to_json(spec), source="again.json") == spec
    assert msgspec.convert(job_to_dict(spec), JobSpec) == spec


def test_unquoted_one_to_one_is_the_pattern_not_yaml_base_60() -> None:
    text = "name: j\ntasks:\n- {name: a, code: {command: [cat]}}\n- {name: b, code: {command: [cat]}}\n"
    spec = decode_job(text + "pipes:\n- {from: a, to: b, pattern: 1:1}\n", source="j.yaml")
    assert spec.pipes[0].pattern == "1:1"
    assert decode_job(job_to_yaml(spec), source="again.yaml") == spec
    spec = decode_job(text + "pipes:\n- {from: a, to: b, pattern: 1:1, format: arrow}\ndefaults: {split_size: 1:2}\n")
    assert spec.pipes[0].pattern == "1:1" and spec.defaults is not None and spec.defaults.split_size == "1:2"


def test_yaml_numbers_with_an_exponent_are_numbers() -> None:
    text = "name: j\ntasks:\n- {name: a, code: {command: [cat]}, resources: {cpu: 5e-1}}\n"
    resources = decode_job(text, source="j.yaml").tasks[0].resources
    assert resources is not None and resources.cpu == 0.5


def test_a_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(InvalidArgumentError) as e:
        decode_job("name: j\ntasks:\n  - name: a\n    code: {function: 'm:f'\n", source="j.yaml")
    assert e.value.message.startswith("j.yaml:5:1: ")
    assert (e.value.fields["line"], e.value.fields["column"]) == (5, 1)
    assert not isinstance(e.value, ConfigError)


def test_a_json_syntax_error_names_line_and_column() -> None:
    with pytest.raises(InvalidArgumentError) as e:
        decode_job('{"name": "j",\n  "tasks": [1,,2]}', source="j.json")
    assert e.value.message.startswith("j.json:2:15: JSON is malformed")
    assert (e.value.fields["line"], e.value.fields["column"]) == (2, 15)


def test_yaml_aliases_are_refused() -> None:
    text = "name: j\ndefaults: &d {max_attempts: 2}\ntasks:\n- {name: a, code: {command: [cat]}}\nx: *d\n"
    with pytest.raises(InvalidArgumentError) as e:
        decode_job(text, source="j.yaml")
    assert "aliases" in e.value.message and e.value.fields["line"] == 5


def test_text_that_is_not_utf8_is_refused_where_it_breaks() -> None:
    with pytest.raises(InvalidArgumentError) as e:
        decode_job(b"name: j\nta\xffsks: []\n", source="j.yaml")
    assert e.value.message == "j.yaml:2:3: not UTF-8 text"


@pytest.mark.parametrize(("text", "fmt"), [("[" * 100_000, "json"), ("- " * 20_000 + "x", "yaml")])
def test_nesting_too_deep_is_an_error_not_a_crash(text: str, fmt: str) -> None:
    with pytest.raises(InvalidArgumentError) as e:
        decode_job(text, fmt=fmt, source="deep")  # type: ignore[arg-type]
    assert e.value.message == "deep: nested too deeply"


def test_a_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError) as e:
        decode_job("- a\n- b\n", source="j.yaml")
    assert "not list" in e.value.message


def test_every_problem_of_form_is_listed_with_its_path() -> None:
    text = """
name: j
tasks:
  - name: a
    instances: 0
    code: {command: [cat]}
  - name: b
    code: {command: [cat]}
    colour: blue
  - name: c
    code: {command: [cat]}
    workers: {mode: fibers}
pipes: 3
bogus: 1
"""
    listed = form_problems(text)
    assert len(listed) == 5, listed
    assert listed[0].startswith("tasks[0].instances: Expected `int` >= 1")
    assert listed[1].startswith("tasks[1].colour: unknown field (known: name, code, instances, ")
    assert listed[2].startswith("tasks[2].workers.mode: Invalid enum value 'fibers'")
    assert listed[3] == "pipes: Expected `array`, got `int`"
    assert listed[4].startswith("bogus: unknown field")


def test_every_problem_of_form_within_one_task_is_listed() -> None:
    text = """
name: j
tasks:
  - instances: many
    inputs: /not/a/list
    code: {function: 3, colour: red}
    resources: {cpu: -1, memory: [1]}
    backups: maybe
"""
    assert [p.split(":")[0] for p in form_problems(text)] == [
        "tasks[0].instances",
        "tasks[0].inputs",
        "tasks[0].code.function",
        "tasks[0].code.colour",
        "tasks[0].resources.cpu",
        "tasks[0].resources.memory",
        "tasks[0].backups",
        "tasks[0].name",
    ]


def test_name_and_tasks_are_required() -> None:
    listed = form_problems("pipes: []\n")
    assert listed == ["name: missing (required)", "tasks: missing (required)"]
    assert form_problems("name: j\ntasks: []\n") == ["tasks: 0 entries, must be 1..1000"]


# -- bounds ------------------------------------------------------------------------------------------------------


def test_a_file_over_the_bound_is_refused_before_parsing() -> None:
    with pytest.raises(MessageTooLargeError) as e:
        decode_job(b"#" * (MAX_FILE_BYTES + 1), source="big.yaml")
    assert e.value.fields["limit"] == MAX_FILE_BYTES


def test_more_tasks_than_the_bound() -> None:
    tasks = [{"name": f"t{i}", "code": {"command": ["cat"]}} for i in range(MAX_TASKS + 1)]
    listed = form_problems(msgspec.json.encode({"name": "j", "tasks": tasks}).decode(), "j.json")
    assert listed == [f"tasks: {MAX_TASKS + 1} entries, must be 1..{MAX_TASKS}"]


def test_more_pipes_than_the_bound() -> None:
    pipes = [{"from": "a", "to": "b"}] * (MAX_PIPES + 1)
    doc = {"name": "j", "tasks": [{"name": "a", "code": {"command": ["cat"]}}], "pipes": pipes}
    listed = form_problems(msgspec.json.encode(doc).decode(), "j.json")
    assert listed == [f"pipes: {MAX_PIPES + 1} entries, must be 0..{MAX_PIPES}"]


@pytest.mark.parametrize(
    ("task", "where", "says"),
    [
        ({"instances": MAX_INSTANCES + 1}, "tasks[0].instances", f"<= {MAX_INSTANCES}"),
        ({"name": "t" * 65}, "tasks[0].name", "length <= 64"),
        ({"max_attempts": 101}, "tasks[0].max_attempts", "<= 100"),
        ({"workers": {"concurrency": 257}}, "tasks[0].workers.concurrency", "<= 256"),
        ({"inputs": ["/a"] * 1025}, "tasks[0].inputs", "length <= 1024"),
        ({"inputs": ["/" + "a" * 4096]}, "tasks[0].inputs[0]", "length <= 4096"),
        ({"code": {"command": ["x"] * 257}}, "tasks[0].code.command", "length <= 256"),
        ({"code": {"function": "m:" + "f" * 512}}, "tasks[0].code.function", "length <= 512"),
        ({"resources": {"cpu": 1001}}, "tasks[0].resources.cpu", "<= 1000"),
        ({"resources": {"cpu": 0}}, "tasks[0].resources.cpu", "> 0"),
        ({"output": {"dir": "/o", "replication": 17}}, "tasks[0].output.replication", "<= 16"),
    ],
)
def test_bounds_of_one_task(task: dict[str, object], where: str, says: str) -> None:
    doc = {"name": "j", "tasks": [{"name": "t", "code": {"command": ["cat"]}, **task}]}
    listed = form_problems(msgspec.json.encode(doc).decode(), "j.json")
    assert len(listed) == 1 and listed[0].startswith(f"{where}: ") and says in listed[0], listed


def test_job_name_length_and_priority_bounds() -> None:
    doc = {"name": "j" * 129, "priority": 1001, "tasks": [{"name": "t", "code": {"command": ["cat"]}}]}
    listed = form_problems(msgspec.json.encode(doc).decode(), "j.json")
    assert [p.split(":")[0] for p in listed] == ["name", "priority"]


def test_guess_format() -> None:
    assert guess_format("a.json", b"name: x") == "json"
    assert guess_format("a.YML", b"{}") == "yaml"
    assert guess_format("<stdin>", b'  {"name": 1}') == "json"
    assert guess_format("<stdin>", b"name: x") == "yaml"
