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


def test_a_saved_model_is_readable_like_any_file(tmp_path):
    """safetensors writes its file anew (mode 0600); the model directory's files get open()'s mode all the same."""
    from lmforge.models import build_model, save_model

    save_model(build_model("gpt", dict(vocab_size=11, max_len=8, d_model=8, n_heads=2, n_layers=1)), tmp_path)
    mask = os.umask(0); os.umask(mask)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


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
