"""The `upt-keras` command line and examples/train.py: errors, data generation, a tiny end-to-end run, resuming."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

from upt_keras import cli
from upt_keras.cli import commands
from upt_keras.config import load_config
from upt_keras.configs import DEFAULT_CONFIG
from upt_keras.data import generate_burgers_dataset, open_trajectories

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "train.py")
KILLED_CLI = os.path.join(ROOT, "tests", "killed_cli.py")  # `upt-keras` that kills itself at a given batch

TINY = """
seed: 0
data:
  source: hdf5
  path: {path}
  test_fraction: 0.25
  val_fraction: 0.25
  rollout_steps: 4
model:
  encoder_dim: 16
  encoder_heads: 2
  num_latent_tokens: 4
  latent_dim: 16
  approximator_width: 16
  approximator_depth: 1
  approximator_heads: 2
  mlp_ratio: 2
  decoder_width: 16
  decoder_depth: 1
  decoder_heads: 2
  decoder_mlp_dim: 16
  frequencies: [1, 2]
training:
  epochs: 2
  batch_size: 8
  inverse_loss_warmup_epochs: 1
output:
  run_dir: {run_dir}
"""


def _env():
    """Environment for child processes: this checkout's package, this backend, one CPU thread each (the machine may be
    shared); on JAX the XLA code-generation flags of conftest.py (half the compile time). TensorFlow's log level is
    left unset: the command line keeps TensorFlow's log lines off standard error by itself."""
    env = dict(os.environ, KERAS_BACKEND=BACKEND, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                         " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _jax_cache(env, tmp_path):
    """On JAX, let the resumed process reuse the first one's compiled steps (XLA compilation dominates there)."""
    if BACKEND == "jax":
        env = dict(env, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _console_script():
    exe = os.path.join(os.path.dirname(sys.executable), "upt-keras")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "upt_keras.cli"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    return str(generate_burgers_dataset(str(path), num_samples=12, resolution=32, t_end=0.1, progress=False))


@pytest.fixture
def tiny_config(tmp_path, tiny_data):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(path=tiny_data, run_dir=tmp_path / "run"))
    return str(path)


# ------------------------------------------------------------------------------------------------------------ errors


def test_config_errors_exit_2_with_one_line(tmp_path, capsys):
    # Through the installed console script; `train` alone takes the CPU default config, which the message names.
    proc = subprocess.run(_console_script() + ["train", "--set", "training.epoch=3", "--run-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"upt-keras: error: {DEFAULT_CONFIG}: training.epoch: unknown key (did you mean 'training.epochs'?)"]
    assert not (tmp_path / "r").exists()  # nothing started
    # ... and in-process: a bad value.
    assert cli.main(["train", "--set", "training.learning_rate=-1", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"upt-keras: error: {DEFAULT_CONFIG}: training.learning_rate: Input should be greater than 0, got int -1"]
    assert not (tmp_path / "r").exists()


def test_train_without_config_is_the_cpu_default_of_the_example():
    assert os.path.samefile(DEFAULT_CONFIG, os.path.join(ROOT, "configs", "train_burgers1d.yaml"))
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.model.preset == "b1d" and cfg.training.time_budget_seconds == 300  # the README's CPU default
    assert cli.build_parser().parse_args(["train"]).config is None  # -> DEFAULT_CONFIG in `train`


def test_bad_arguments_and_missing_data_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--epochs", "zero"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs" in err[0] and "positive integer" in err[0]
    assert cli.main(["rollout", "--model", str(tmp_path / "none.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    capsys.readouterr()
    code = cli.main(["train", "--set", "data.source=hdf5", "--set", f"data.path={tmp_path / 'missing.h5'}",
                     "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.h5: file not found" in err[0]
    assert not (tmp_path / "r").exists()  # the run directory it had begun is gone again


def test_generate_data_writes_a_readable_file(tmp_path, capsys):
    out = tmp_path / "sub" / "b.h5"
    code = cli.main(["generate-data", "--out", str(out), "--dim", "1", "--num-samples", "3", "--resolution", "16",
                     "--nu", "0.02", "--ic", "sinusoid", "--t-end", "0.05", "--quiet"])
    assert code == 0 and "3 trajectories" in capsys.readouterr().out
    with open_trajectories(out) as store:
        assert (store.num_samples, store.num_frames, store.grid_shape, store.num_channels) == (3, 6, (16,), 1)
        assert store.dt == pytest.approx(0.01) and store.nu == pytest.approx(0.02)
        assert np.all(np.isfinite(store.read([0, 1, 2])))
    assert cli.main(["generate-data", "--out", str(tmp_path / "x.h5"), "--equation", "vector"]) == 2
    assert "needs --dim 2" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------ end to end


def _epochs(run):
    with open(run / "history.csv") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def test_train_resume_evaluate_rollout_end_to_end(tmp_path, tiny_config, capsys):
    """`upt-keras train` killed during epoch 1 resumes there when rerun; then evaluate and rollout the result."""
    run = tmp_path / "run"
    args = ["train", "--config", tiny_config, "--epochs", "3", "--verbose", "2"]
    cmd = _console_script() + args
    env = _jax_cache(_env(), tmp_path)
    killed = subprocess.run([sys.executable, KILLED_CLI, "1:1"] + args, capture_output=True, text=True, env=env,
                            timeout=600)
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert _epochs(run) == [0] and (run / "backup").is_dir() and not (run / "metrics.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    out = resumed.stdout
    assert f"backend {BACKEND} on CPU" in out and "resuming the interrupted run" in out and "identity" in out
    assert resumed.stderr == ""  # no log lines of TensorFlow (on any backend), nor of any other framework
    assert "epoch 2/3: " in out and "epoch 1/3" not in out  # lost only the epoch in progress
    assert _epochs(run) == [0, 1, 2]
    for name in ("config.yaml", "normalization.json", "model.keras", "history.csv", "metrics.json",
                 "loss_curves.png", "rollout_nrmse.png", "rollout_spacetime_latent.png",
                 "rollout_spacetime_physical.png"):
        assert (run / name).stat().st_size > 0, name
    assert not (run / "backup").exists()  # removed once the run finished
    assert load_config(run / "config.yaml").output.run_dir == str(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_epoch"] == 1 and metrics["training"]["epochs_completed"] == 3
    assert metrics["training"]["backend"] == BACKEND
    one = metrics["one_step"]
    assert one["num_pairs"] == 3 * 10
    assert 0 < one["identity"]["nrmse"] < 0.2 and np.isfinite(one["model"]["nrmse"])
    for mode in ("latent", "physical", "identity"):
        curve = metrics["rollout"][mode]
        assert len(curve["nrmse_per_step"]) == 4 and curve["nrmse_last"] == curve["nrmse_per_step"][-1]
        assert curve["nrmse_mean"] == pytest.approx(np.mean(curve["nrmse_per_step"]))

    # A second training into the finished run is refused before anything is read or written.
    before = (run / "metrics.json").read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"upt-keras: error: {run} holds a finished run (model.keras, metrics.json); pass --overwrite to replace it, "
        "or choose another --run-dir"]

    # Evaluating the saved best model reproduces the numbers the training run reported for it, in evaluation/
    # beside the training's results, which stay as they were; writing over them needs --overwrite.
    assert cli.main(["evaluate", "--model", str(run / "model.keras"), "--verbose", "0"]) == 0
    again = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert again["one_step"]["model"]["nrmse"] == pytest.approx(one["model"]["nrmse"], rel=1e-4)
    assert again["one_step"]["identity"] == one["identity"] and again["training"] == metrics["training"]
    assert (run / "evaluation" / "loss_curves.png").stat().st_size > 0  # from the run's history
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(run / "model.keras"), "--out-dir", str(run)]) == 2
    assert "holds a training run's results" in capsys.readouterr().err
    assert (run / "metrics.json").read_bytes() == before

    assert cli.main(["rollout", "--model", str(run / "model.keras"), "--steps", "3", "--mode", "physical"]) == 0
    ro_dir = run / "rollout_physical_3steps"
    ro = json.loads((ro_dir / "rollout.json").read_text())
    assert ro["num_steps"] == 3 and "latent" not in ro
    assert ro["physical"]["nrmse_per_step"] == pytest.approx(metrics["rollout"]["physical"]["nrmse_per_step"][:3],
                                                             rel=1e-4)
    assert (ro_dir / "rollout_nrmse.png").stat().st_size > 0
    assert (ro_dir / "rollout_spacetime_physical.png").stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["rollout", "--model", str(run / "model.keras"), "--steps", "11"]) == 2  # 11 frames: at most 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rollout_steps=11" in err[0] and "12 frames" in err[0]


def test_example_script_finds_its_default_config_from_any_directory(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("example_train", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    assert os.path.samefile(example.parse_args([]).config, os.path.join(ROOT, "configs", "train_burgers1d.yaml"))
    # A typo in an override is reported against the default config file, which must therefore have been found.
    assert example.main(["--set", "training.epoch=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_burgers1d.yaml" in err[0] and "did you mean 'training.epochs'" in err[0]


def test_progress_output_defaults_to_one_line_per_epoch_off_a_terminal(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert commands._verbosity(0) == 0 and commands._verbosity(1) == 1  # an explicit --verbose always wins
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert commands._verbosity(None) == 2  # a log file gets one line per epoch, not progress-bar redraws
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert commands._verbosity(None) == 1
    assert cli.build_parser().parse_args(["evaluate", "--model", "m.keras"]).verbose is None
