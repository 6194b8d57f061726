"""How an `upt-keras` process starts: what it imports (`python -X importtime`), which backend it picks, TensorFlow's log
lines kept off standard error, and `import upt_keras` registering the model classes with Keras in either order."""

import os
import subprocess
import sys

import pytest

import keras

from upt_keras import cli
from upt_keras.cli import runtime

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("keras", "torch", "tensorflow", "jax")


def _env(**extra):
    env = dict(os.environ, KERAS_BACKEND=BACKEND, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]), **extra)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def _run(args, env=None, importtime=False):
    """`python [-X importtime] args` in a child process: (exit status, stdout, stderr lines, imported top-level
    packages)."""
    cmd = [sys.executable] + (["-X", "importtime"] if importtime else []) + args
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=300, cwd=ROOT)
    lines, imported = [], set()
    for line in proc.stderr.splitlines():
        if importtime and line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
        else:
            lines.append(line)
    return proc.returncode, proc.stdout, lines, imported


def test_help_and_config_errors_import_no_framework():
    code, out, err, imported = _run(["-m", "upt_keras.cli", "--help"], importtime=True)
    assert code == 0 and "train" in out and err == []
    assert imported and not imported & set(FRAMEWORKS)
    code, _, err, imported = _run(["-m", "upt_keras.cli", "train", "--set", "model.latent_dim=0"], importtime=True)
    assert code == 2 and len(err) == 1 and "model.latent_dim" in err[0]
    assert not imported & set(FRAMEWORKS)
    code, _, err, imported = _run(["-m", "upt_keras.cli", "trian"], importtime=True)  # a typo
    assert code == 2 and len(err) == 1 and "invalid choice: 'trian'" in err[0]
    assert not imported & set(FRAMEWORKS)


def test_the_backend_alone_is_imported_and_tensorflow_logs_nothing():
    code, out, err, _ = _run(["-c", "import sys; from upt_keras.cli import runtime; runtime.choose_backend(); "
                                    "_, device = runtime.import_keras(); print(device, sorted(m for m in "
                                    "('torch', 'tensorflow', 'jax') if m in sys.modules))"])
    assert code == 0 and err == []  # TensorFlow's start-up lines (and its no-CUDA-driver error) are held back
    assert out.split() == ["CPU", f"['{BACKEND}']"]  # Keras alone would import JAX too, and TensorFlow to save


def test_a_process_that_imported_keras_keeps_its_frameworks(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", BACKEND)
    assert runtime.import_keras() == (keras, "CPU")  # as `cli.main` called from a program or a test does
    assert not any(isinstance(f, runtime._NotHere) for f in sys.meta_path)


def test_keras_backend_unset_takes_the_first_installed(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no keras.json
    installed = {"tensorflow", "jax"}
    monkeypatch.setattr(runtime, "_installed", lambda name: name in installed)
    assert runtime.choose_backend() == ("tensorflow", "default") and os.environ["KERAS_BACKEND"] == "tensorflow"
    monkeypatch.delenv("KERAS_BACKEND")
    installed.add("torch")
    assert runtime.choose_backend() == ("torch", "default")  # not Keras's own default, tensorflow
    monkeypatch.delenv("KERAS_BACKEND")
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')  # a backend chosen in keras.json is kept
    assert runtime.choose_backend() == ("jax", "keras.json")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert runtime.choose_backend() == ("tensorflow", "KERAS_BACKEND")


def test_an_unusable_backend_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    model = tmp_path / "m.keras"
    model.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive: it gets as far as choosing the backend
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert cli.main(["evaluate", "--model", str(model)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "upt-keras: error: KERAS_BACKEND='theano' is not supported; set it to one of torch, tensorflow, jax"]


def test_stderr_filter_drops_tensorflow_start_up_lines_only(capfd):
    noise = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1796527343.305112    3182 port.cc:153] oneDNN custom operations are on.",
             "I0000 00:00:1796527343.305520    3182 cudart_stub.cc:31] Could not find cuda drivers on your machine",
             "E0000 00:00:1796527349.596141    5236 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
             "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
             "appropriate compiler flags."]
    kept = ["E0000 00:00:1796527349.596141    5236 op_kernel.cc:1] a real error", "a line of our own"]
    capfd.readouterr()
    with runtime.stderr_filtered():
        os.write(2, "\n".join(noise[:2] + kept[:1] + noise[2:] + kept[1:]).encode() + b"\n")  # as C++ writes it
    assert capfd.readouterr().err.splitlines() == kept
    with pytest.raises(RuntimeError):  # a failure shows everything that was written
        with runtime.stderr_filtered():
            os.write(2, (noise[1] + "\n").encode())
            raise RuntimeError
    assert capfd.readouterr().err.splitlines() == [noise[1]]


def test_import_upt_keras_registers_the_model_for_load_model_in_either_order():
    model = os.path.join(ROOT, "tests", "data", "upt_tiny_0.1.0.keras")
    code, out, err, _ = _run(["-c", "import sys, importlib.util, upt_keras; assert 'keras' not in sys.modules; "
                                    "importlib.util.find_spec('keras'); import keras; "  # a look-up first, as tools do
                                    f"print(type(keras.saving.load_model({model!r})).__name__)"])
    assert code == 0 and out.split() == ["UPT"], err
    # the other order is tests/test_compat.py's (Keras imported first)
