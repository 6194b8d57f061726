"""The optional packages (extras `tune` and `plot`): the core does without them, and what needs one says which extra
installs it.

Each check runs in a fresh interpreter in which the package cannot be imported (`sys.modules[name] = None`, which
Python treats as a failed import), the way it behaves where the package is not installed.
"""

import os
import subprocess
import sys
import textwrap

import keras
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_without(module, code, cwd):
    """Run `code` in a child interpreter where `module` cannot be imported; returns (stdout, stderr)."""
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    script = f"import sys\nsys.modules[{module!r}] = None\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


PLOT_MESSAGE = 'drawing the figures of a run needs matplotlib, which is not installed: pip install "upt-keras[plot]"'
TUNE_MESSAGE = ('the hyper-parameter search (upt-keras tune) needs keras-tuner, which is not installed: '
                'pip install "upt-keras[tune]"')


def test_without_matplotlib_figures_are_skipped_with_one_line(tmp_path):
    out, _ = _run_without("matplotlib", """
        import os
        from upt_keras._optional import MissingExtra
        from upt_keras.evaluation import plots, write_plots

        try:
            plots.plot_rollout_error({"model": [0.1, 0.2]}, "x.png")
        except MissingExtra as err:
            print("raised:", err)
        rollout = {"model": {"nrmse_per_step": [0.1, 0.2]}, "num_rollouts": 1}
        print("written:", write_plots("run", rollout=rollout, history={"loss": [1.0, 0.5]}), os.listdir("run")
              if os.path.exists("run") else None)
    """, tmp_path)
    assert out.splitlines() == [f"raised: {PLOT_MESSAGE}", f"upt-keras: figures skipped: {PLOT_MESSAGE}",
                                "written: {} None"]


def test_without_keras_tuner_the_search_names_its_extra(tmp_path):
    out, err = _run_without("keras_tuner", """
        from upt_keras import cli, tuning
        from upt_keras._optional import MissingExtra

        print("space:", tuning.parse_tuning({"lambda_inv_enc": 0.01})["lambda_inv_enc"])  # no KerasTuner needed
        try:
            tuning.tune
        except MissingExtra as err:
            print("raised:", err)
        print("exit:", cli.main(["tune", "--max-trials", "1", "--directory", "searches"]))
    """, tmp_path)
    assert out.splitlines() == ["space: 0.01", f"raised: {TUNE_MESSAGE}", "exit: 2"]
    # (TensorFlow may log its start-up lines on standard error before: `tuning.tune` imports Keras first)
    assert [line for line in err.splitlines() if line.startswith("upt-keras")] == [f"upt-keras: error: {TUNE_MESSAGE}"]
    assert not os.path.exists(tmp_path / "searches")  # refused before anything started


@pytest.mark.skipif(tomllib is None, reason="reading pyproject.toml needs Python >= 3.11")
def test_extras_in_pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)["project"]
    names = {dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not names & {"keras-tuner", "scikit-learn", "matplotlib"}  # the core needs none of them
    assert set(extras["tune"]) == {"keras-tuner", "scikit-learn"} and extras["plot"] == ["matplotlib"]
    assert set(extras["tune"] + extras["plot"]) <= set(extras["all"])
