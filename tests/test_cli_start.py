"""How an `upt-keras` process starts: `import upt_keras` registering the model classes with Keras in either order."""

import os
import subprocess
import sys

import keras

BACKEND = keras.backend.backend()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_import_upt_keras_registers_the_model_for_load_model_in_either_order():
    model = os.path.join(ROOT, "tests", "data", "upt_tiny_0.1.0.keras")
    code, out, err, _ = _run(["-c", "import sys, upt_keras; assert 'keras' not in sys.modules; import keras; "
                                    f"print(type(keras.saving.load_model({model!r})).__name__)"])
    assert code == 0 and out.split() == ["UPT"], err
    # the other order is tests/test_compat.py's (Keras imported first)
