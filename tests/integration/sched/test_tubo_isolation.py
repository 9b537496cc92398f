"""Processes of different applications under their own uids (app_uids): they cannot signal each other or read
each other's work dirs; processes of one application share its uid; the range is a bound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tubo_fixtures import Make, ended, needs_cgroups, spec

from feitian.errors import ConfigError, OverloadedError
from feitian.sched.tubo import ProcState

FIRST_UID = 61_000  # a range no account of this machine uses

pytestmark = [needs_cgroups, pytest.mark.skipif(os.geteuid() != 0, reason="app_uids needs root")]


def test_applications_cannot_signal_or_read_each_other(supervisors: Make) -> None:
    sup = supervisors(app_uids=(FIRST_UID, 2))
    b = sup.start(spec("b1", "echo secret > mine; exec sleep 1000", app_id="appB"))
    work_b = Path(b.work_dir)
    probe = f"id -u; kill -0 {b.pid} && echo signalled; cat {work_b}/mine && echo read; exit 0"
    a = sup.start(spec("a1", probe, app_id="appA"))
    a2 = sup.start(spec("a2", "id -u", app_id="appA"))
    assert ended(sup, "a1").state is ProcState.FINISHED
    assert ended(sup, "a2").state is ProcState.FINISHED
    out_a = (Path(a.work_dir) / "stdout.log").read_text().split()
    err_a = (Path(a.work_dir) / "stderr.log").read_text()
    uid_a = int(out_a[0])
    assert uid_a in (FIRST_UID, FIRST_UID + 1)
    assert "signalled" not in out_a and "read" not in out_a, out_a
    assert "not permitted" in err_a and "Permission denied" in err_a, err_a
    assert (Path(a2.work_dir) / "stdout.log").read_text().split() == [str(uid_a)], "one uid per application"
    assert work_b.stat().st_uid == FIRST_UID + FIRST_UID + 1 - uid_a
    with pytest.raises(OverloadedError, match="application uids"):
        sup.start(spec("c1", "true", app_id="appC"))
    sup.stop("b1", grace_s=0)
    assert ended(sup, "b1").state is ProcState.KILLED
    for proc_id in ("a1", "a2", "b1"):
        sup.forget(proc_id)
    c = sup.start(spec("c1", "id -u", app_id="appC"))  # the uids are free again
    assert ended(sup, "c1").state is ProcState.FINISHED
    assert int((Path(c.work_dir) / "stdout.log").read_text()) == FIRST_UID


def test_bad_uid_ranges_are_config_errors(supervisors: Make) -> None:
    with pytest.raises(ConfigError, match="first uid"):
        supervisors(app_uids=(0, 5))
    with pytest.raises(ConfigError, match="past uid"):
        supervisors(app_uids=(2**32 - 3, 5))
