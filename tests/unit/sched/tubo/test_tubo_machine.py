"""Tubo's view of its machine: detected capacity with overrides, health by the disk of its root, and the trash
that deletes forgotten work dirs a bounded number of entries at a time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from feitian.errors import ConfigError
from feitian.sched.tubo import MachineConfig, detect_capacity, machine_health
from feitian.sched.tubo.machine import DEFAULT_NET_MBPS, net_mbps_available
from feitian.sched.tubo.trash import Trash


def test_detected_capacity_is_plausible(tmp_path: Path) -> None:
    capacity = detect_capacity(tmp_path)
    assert set(capacity) == {"cpu", "memory", "disk", "net"}
    assert 1000 <= capacity["cpu"] <= len(os.sched_getaffinity(0)) * 1000
    assert 64 << 20 < capacity["memory"] <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert capacity["disk"] > 0 and capacity["net"] > 0


def test_overrides_let_one_laptop_pose_as_another_machine(tmp_path: Path) -> None:
    config = MachineConfig(cpu_millis=32_000, memory_bytes=128 << 30, disk_bytes=1 << 40, net_mbps=10_000)
    assert detect_capacity(tmp_path, config) == {
        "cpu": 32_000,
        "memory": 128 << 30,
        "disk": 1 << 40,
        "net": 10_000,
    }


def test_bad_overrides_are_listed_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        detect_capacity(tmp_path, MachineConfig(cpu_millis=0, net_mbps=-5, disk_full_ratio=1.5))
    assert len(caught.value.problems) == 3
    assert "cpu_millis must be a positive integer" in str(caught.value)


def test_net_speed_from_sysfs_or_default(tmp_path: Path) -> None:
    for name, speed in (("lo", "100000"), ("eth0", "10000"), ("eth1", "-1"), ("wlan0", "")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "speed").write_text(speed)
    assert net_mbps_available(tmp_path) == 10_000
    assert net_mbps_available(tmp_path / "missing") == DEFAULT_NET_MBPS


def test_health_by_the_disk_of_the_root(tmp_path: Path) -> None:
    usage = shutil.disk_usage(tmp_path)
    expected = (usage.total - usage.free) / usage.total <= 0.95 and usage.free >= 1 << 30
    assert machine_health(tmp_path).healthy == expected
    full = machine_health(tmp_path, MachineConfig(min_free_disk_bytes=1 << 62))
    assert not full.healthy and f"disk of {tmp_path}" in full.reasons[0]
    ratio = machine_health(tmp_path, MachineConfig(disk_full_ratio=1e-9, min_free_disk_bytes=0))
    assert not ratio.healthy
    assert machine_health(tmp_path, MachineConfig(disk_full_ratio=1.0, min_free_disk_bytes=0)).healthy
    gone = machine_health(tmp_path / "nope")
    assert not gone.healthy and "cannot measure" in gone.reasons[0]


def test_trash_deletes_a_bounded_number_of_entries_per_call(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    trash.directory.mkdir()
    work = tmp_path / "work"
    (work / "deep" / "er").mkdir(parents=True)
    for i in range(25):
        (work / "deep" / "er" / f"f{i}").write_text("x")
    os.symlink("/etc", work / "link")
    trash.put(work)
    trash.put(tmp_path / "missing")  # nothing to do
    assert not work.exists() and not trash.empty()
    assert trash.delete_some(budget=10) == 10
    assert not trash.empty()
    while trash.delete_some(budget=10):
        pass
    assert trash.empty()
    assert Path("/etc").is_dir(), "a symlink is removed, never followed"
