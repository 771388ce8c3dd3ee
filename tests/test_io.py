import os

import pytest

from lmforge.io import atomic_write, atomic_write_text


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    mask = os.umask(0); os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary left behind


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "good")

    def half_then_fail(tmp):
        open(tmp, "w").write("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
