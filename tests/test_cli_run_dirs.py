"""`upt-keras` and the folders and files it is given: run directories in use or finished, model files of other kinds,
folders that cannot be made, grids the model config does not fit. Each ends in one line and exit status 2, and
leaves nothing behind."""

import os
import subprocess
import sys

import pytest

import keras

from upt_keras import cli
from upt_keras.cli import commands, run_dirs
from upt_keras.data import generate_burgers_dataset

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """
data: {{source: hdf5, path: {path}, test_fraction: 0.25, val_fraction: 0.25, rollout_steps: 4}}
model: {{preset: tiny}}
training: {{epochs: 1, batch_size: 8}}
output: {{run_dir: {run_dir}}}
"""


def _cli(args, timeout=300):
    """`upt-keras args` in a child process on this checkout and backend: (exit status, stdout, stderr lines)."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    proc = subprocess.run([sys.executable, "-m", "upt_keras.cli"] + [str(a) for a in args], capture_output=True,
                          text=True, env=env, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr.strip().splitlines()


@pytest.fixture(scope="module")
def data_128(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "b128.h5"
    return str(generate_burgers_dataset(str(path), num_samples=8, resolution=128, t_end=0.06, progress=False))


def test_a_run_directory_in_use_is_refused(tmp_path, data_128):
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(path=data_128, run_dir=run))
    run.mkdir()
    with run_dirs.locked(run):  # another training holds it
        code, _, err = _cli(["train", "--config", config])
        assert code == 2 and err == [f"upt-keras: error: {run} is in use by another training (process "
                                     f"{os.getpid()}); wait until it ends, or choose another --run-dir"]
        assert os.listdir(run) == [run_dirs.LOCK_FILE]
    assert os.listdir(run) == []  # the lock file goes with the lock
    with run_dirs.locked(run):  # and a lock file left behind by a killed process blocks nobody
        pass


def test_overwrite_clears_what_upt_keras_wrote_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    for name in ("config.yaml", "model.keras", "metrics.json", "history.csv", "loss_curves.png",
                 "rollout_spacetime_latent.png", "notes.txt", "evaluation/metrics.json", "rollout_latent_20steps/x.png",
                 "backup/training_metadata.json", "mine/metrics.json"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    assert run_dirs.finished_files(run) == []  # a backup: an interrupted run, which `train` resumes
    (run / "backup" / "training_metadata.json").unlink()
    (run / "backup").rmdir()
    assert run_dirs.finished_files(run) == ["model.keras", "metrics.json"]
    run_dirs.clear(run)
    assert sorted(os.listdir(run)) == ["mine", "notes.txt"]


def test_train_overwrite_clears_the_finished_run_before_it_starts(tmp_path, data_128, monkeypatch, capsys):
    run = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(path=data_128, run_dir=run))
    run.mkdir()
    for name in ("model.keras", "metrics.json", "notes.txt"):
        (run / name).write_text("x")
    seen = []

    def start_backend(keep=()):  # stands for the training: what the run directory holds when it would start
        seen.append(sorted(os.listdir(run)))
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_start_backend", start_backend)
    assert cli.main(["train", "--config", str(config)]) == 2  # refused: a finished run
    assert seen == [] and "--overwrite" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(config), "--overwrite"]) == 130
    assert seen == [[run_dirs.LOCK_FILE, "notes.txt"]]  # locked, the old run's files gone, the user's kept
    assert os.listdir(run) == ["notes.txt"]


def test_a_grid_the_default_config_does_not_fit_names_the_key_and_a_value(tmp_path, data_128):
    run = tmp_path / "run"
    code, _, err = _cli(["train", "--set", "data.source=hdf5", "--set", f"data.path={data_128}", "--run-dir", run])
    assert code == 2 and err == [
        "upt-keras: error: model.num_latent_tokens=64 must divide the 32 patches of grid shape (128,) "
        "(model.patch_size=4, model.pooling=average); e.g. --set model.num_latent_tokens=32"]
    assert not run.exists()  # nothing half-written


def test_evaluate_a_file_of_another_model_is_one_line(tmp_path, data_128):
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(other)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(path=data_128, run_dir=tmp_path / "run"))
    code, out, err = _cli(["evaluate", "--model", other, "--config", config])
    assert code == 2 and err == [f"upt-keras: {other} holds a Sequential, not a upt-keras UPT model"], out
    notzip = tmp_path / "notes.keras"
    notzip.write_text("not a model")
    code, _, err = _cli(["evaluate", "--model", notzip, "--config", config])
    assert code == 2 and err == [f"upt-keras: {notzip} is not a .keras model file (not a zip archive)"]
    assert sorted(os.listdir(tmp_path)) == ["notes.keras", "other.keras", "tiny.yaml"]  # no evaluation/ folder


def test_generate_data_into_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub" / "b.h5"
    code, _, err = _cli(["generate-data", "--out", out, "--num-samples", "2", "--resolution", "16", "--quiet"])
    assert code == 2 and err == [f"upt-keras: error: cannot create the folder {out.parent}: Not a directory"]
    code, _, err = _cli(["generate-data", "--out", tmp_path / "new" / "b.h5", "--num-samples", "2", "--resolution",
                         "16", "--t-end", "0.05", "--dt-save", "0.1", "--quiet"])
    assert code == 2 and len(err) == 1 and err[0].startswith("upt-keras generate-data: ")
    assert sorted(os.listdir(tmp_path)) == ["file"]  # the folder it had made for the file is gone again
