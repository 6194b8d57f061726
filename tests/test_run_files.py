"""Run and search directory files: atomic JSON, and the settings check of a resumed run."""

import json
import os

import pytest

from upt_keras.training import pipeline
from upt_keras.config import ConfigError, load_config, save_config
from upt_keras.run_files import comparable_config, settings_changes, write_json


def test_write_json_creates_the_folder_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "x.json"
    assert write_json(path, {"a": [1, 2], "b": None}) == str(path)
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": None} and path.read_text().endswith("}\n")
    assert os.listdir(path.parent) == ["x.json"]


def test_comparable_config_and_settings_changes():
    cfg = load_config(None, ["training.epochs=3"])
    full = comparable_config(cfg)
    assert full["training"]["epochs"] == 3 and "output" in full
    assert "output" not in comparable_config(cfg, ("output",))
    some = comparable_config(cfg, ("output.plots", "training.time_budget_seconds", "training.no_such_key"))
    assert "plots" not in some["output"] and "run_dir" in some["output"]
    assert "time_budget_seconds" not in some["training"]

    assert settings_changes(full, comparable_config(cfg)) is None
    other = comparable_config(load_config(None, ["training.epochs=4", "training.batch_size=3", "seed=5",
                                                 "data.val_fraction=0.2"]))
    # The first three differing keys in sorted order.
    assert settings_changes(full, other) == ("data.val_fraction: 0.1 -> 0.2, seed: 0 -> 5, "
                                             "training.batch_size: 32 -> 3")


def test_resuming_refuses_a_changed_configuration(tmp_path):
    cfg = load_config(None, ["training.epochs=3"])
    save_config(cfg, tmp_path / pipeline.CONFIG_FILE)
    # Where, how visibly and how long a run goes may change ...
    pipeline._check_resume_config(load_config(None, ["training.epochs=3", "output.plots=false",
                                                     "training.time_budget_seconds=60"]), str(tmp_path))
    # ... what it trains may not.
    with pytest.raises(ConfigError, match=r"different configuration \(training.learning_rate: 0.001 -> 0.01\)"):
        pipeline._check_resume_config(load_config(None, ["training.epochs=3", "training.learning_rate=0.01"]),
                                      str(tmp_path))
