"""The Python API (feitian.job.spec.Job) builds the same description a job file gives: round trips through
dict, JSON and YAML, equality with the shipped example, arguments checked at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from feitian.errors import ConfigError, InvalidArgumentError
from feitian.job.spec import Job, KeySpec, decode_job, read_job

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "jobs"


def terasort() -> Job:
    return (
        Job("terasort", priority=50)
        .defaults(cpu=1, memory="1GiB", max_attempts=4, backups=True)
        .task(
            "read",
            inputs=["/data/terasort/input/*"],
            split_size="64MiB",
            function="terasort.tasks:read_records",
            package="terasort",
        )
        .task(
            "write",
            instances=8,
            memory="2GiB",
            function="terasort.tasks:write_records",
            package="terasort",
            output="/results/terasort",
            replication=1,
        )
        .pipe("read", "write", pattern="range", key=KeySpec(type="bytes", prefix_bytes=10), sort=True)
    )


def test_the_api_builds_what_the_example_file_holds() -> None:
    assert terasort().spec == read_job(EXAMPLES / "terasort.yaml")


def test_wordcount_and_join_from_python_equal_their_files() -> None:
    wordcount = (
        Job("wordcount")
        .defaults(cpu=1, memory="512MiB", mode="threads", concurrency=2)
        .task("map", inputs=["/data/wordcount/*.txt"], function="wordcount.tasks:map_words", package="wordcount")
        .task(
            "reduce",
            instances=4,
            function="wordcount.tasks:sum_counts",
            package="wordcount",
            output="/results/wordcount",
            replication=3,
        )
        .pipe("map", "reduce", pattern="hash", sort=True, format="kv")
    )
    assert wordcount.spec == read_job(EXAMPLES / "wordcount.yaml")
    join = (
        Job("join-orders-customers")
        .defaults(format="arrow", cpu=1, memory="1GiB")
        .task(
            "orders",
            inputs=["/data/join/orders/*.csv"],
            operator="read_csv",
            args={"columns": ["order_id", "customer_id", "amount"]},
        )
        .task(
            "customers",
            inputs=["/data/join/customers.csv"],
            operator="read_csv",
            args={"columns": ["customer_id", "name", "country"]},
        )
        .task("join", instances=4, function="join.tasks:join_on_customer", package="join", output="/results/join")
        .pipe("orders", "join", pattern="hash", key="customer_id")
        .pipe("customers", "join", pattern="hash", key=["customer_id"])
    )
    assert join.spec == read_job(EXAMPLES / "join.json")


def test_round_trips_through_dict_json_and_yaml() -> None:
    job = terasort()
    assert decode_job(job.to_yaml(), source="t.yaml") == job.spec
    assert decode_job(job.to_json(), source="t.json") == job.spec
    assert Job.loads(job.to_json()).spec == job.spec
    assert job.to_dict()["pipes"][0] == {
        "from": "read",
        "to": "write",
        "pattern": "range",
        "sort": True,
        "key": {"type": "bytes", "prefix_bytes": 10},
    }


def test_one_input_path_may_be_given_as_a_string() -> None:
    job = Job("j").task("t", inputs="/data/*.txt", command=["cat"])
    assert job.spec.tasks[0].inputs == ("/data/*.txt",)


def test_a_loaded_job_can_be_extended(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(terasort().to_yaml())
    job = Job.load(path).task("check", function="terasort.tasks:validate").pipe("write", "check", pattern="1:N")
    assert [t.name for t in job.spec.tasks] == ["read", "write", "check"]
    assert job.problems() == []


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: Job("j").task("t", instances="4", command=["cat"]), "task 't': Expected `int | null`, got `str`"),  # type: ignore[arg-type]
        (lambda: Job("j").task("t", instances=0, command=["cat"]), "task 't': Expected `int` >= 1 - at `instances`"),
        (lambda: Job("j").task("t", command=["cat"], replication=2), "replication is the output's"),
        (lambda: Job("j").task("t", command="wc -l"), "command must be a list of words"),
        (lambda: Job("j").task("t", command=["cat"], mode="fibers"), "Invalid enum value 'fibers'"),
        (lambda: Job("j").pipe("a", "b", pattern="2:2"), "pipe a -> b: Invalid enum value '2:2'"),
        (lambda: Job("j").defaults(max_attempts=0), "defaults: Expected `int` >= 1"),
        (lambda: Job(123), "job name: Expected `str`, got `int`"),  # type: ignore[arg-type]
    ],
)
def test_arguments_are_checked_at_once(build: object, says: str) -> None:
    with pytest.raises(InvalidArgumentError) as e:
        build()  # type: ignore[operator]
    assert says in e.value.message


def test_validate_lists_what_needs_the_whole_job() -> None:
    job = Job("j").task("a", command=["cat"]).pipe("a", "b").pipe("b", "a")
    assert [str(p) for p in job.problems()] == [
        "pipes[0].to: unknown task 'b' (tasks: a)",
        "pipes[1].from: unknown task 'b' (tasks: a)",
    ]
    with pytest.raises(ConfigError):
        job.validate()
