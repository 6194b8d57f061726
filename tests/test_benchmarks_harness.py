"""The benchmarks' shared harness (`benchmarks/harness.py`), and that every benchmark module imports cleanly.

Nothing here trains or times a model: child processes run trivial functions of this file.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import harness  # noqa: E402

MODULES = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


def _double(x):  # run in a child by `harness.run_function`
    return {"twice": 2 * x, "pid": os.getpid()}


def _affinity():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _fail():
    raise ValueError("no result here")


def test_markdown_table():
    lines = harness.markdown_table(["name", "seconds"], [["a", "1.50"], ["b", None]], align=["l", "r"])
    assert lines == ["| name | seconds |", "|---|---:|", "| a | 1.50 |", "| b |  |"]
    assert harness.markdown_table(["x"], [])[1] == "|---|"


def test_command_line_records_the_arguments_without_local_paths():
    argv = ["--datasets", "b1d", "--out", "/somewhere/x.json", "--run-root=/tmp/r", "--budgets", "60"]
    assert harness.command_line("bench_accuracy.py", argv, backend="jax") == (
        "KERAS_BACKEND=jax python benchmarks/bench_accuracy.py --datasets b1d --budgets 60")
    assert harness.command_line("bench_b64.py", ["--out", "a.md"], local=()) == "python benchmarks/bench_b64.py --out a.md"
    assert harness.command_line("bench_terms.py", []) == "python benchmarks/bench_terms.py"


def test_machine_line_names_cpu_cores_date_and_packages():
    info = dict(cpu="Some CPU", cores=2, ram_gib=8.0, python="3.11.0", date="2026-01-02",
                versions={"keras": "3.0", "jax": "not installed"})
    assert harness.machine_line(info) == "Machine: Some CPU, 2 cores, 8 GiB RAM; Python 3.11.0, keras 3.0; 2026-01-02."
    info = harness.machine_info()
    assert info["cores"] == os.cpu_count() and set(info["versions"]) == set(harness.PACKAGES)


def test_write_text_creates_the_folder(tmp_path):
    path = tmp_path / "results" / "table.md"
    harness.write_text(str(path), "| a |\n")
    harness.write_json(str(path.with_suffix(".json")), {"a": 1})
    assert path.read_text() == "| a |\n" and path.with_suffix(".json").read_text() == '{\n "a": 1\n}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.json", "table.md"]
    assert harness.results_path("results_b64.md") == str(BENCHMARKS / "results" / "results_b64.md")


def test_emit_and_parse_result(capsys):
    harness.emit({"a": [1, 2.5], "b": None})
    out = "noise\n" + capsys.readouterr().out
    assert harness.parse_result(out) == {"a": [1, 2.5], "b": None}
    assert harness.parse_result("nothing tagged\n") is None
    assert harness.error_text("first\nlast line\n", 3) == "exit 3: last line"
    assert harness.error_text("", 1) == "exit 1: no output"


def test_function_in_a_child_returns_its_json():
    result = harness.run_function(_double, 21, timeout=120)
    assert result["twice"] == 42 and result["pid"] != os.getpid()


def test_child_pinned_to_a_core():
    core = harness.cores()[-1]
    affinity = harness.run_function(_affinity, core=core, timeout=120)
    assert affinity in (None, [core])


def test_failing_child_raises_with_its_error():
    with pytest.raises(harness.ChildError, match="ValueError: no result here") as err:
        harness.run_function(_fail, timeout=120)
    assert "Traceback" in err.value.stderr


def test_child_env():
    env = harness.child_env("jax", one_thread=True, cpu_only=True, EXTRA=1)
    assert env["KERAS_BACKEND"] == "jax" and env["OMP_NUM_THREADS"] == "1" and env["EXTRA"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["JAX_PLATFORMS"] == "cpu"
    assert "--xla_cpu_multi_thread_eigen=false" in env["XLA_FLAGS"]


def test_pinning_tolerated_without_sched_setaffinity(monkeypatch):
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert harness.pin_to_core(0) is False
    assert harness.pin_to_core(None) is False
    assert harness.cores() == list(range(os.cpu_count() or 1))


def test_memory():
    assert harness.peak_rss_mib() > 0 and harness.rss_mib() > 0
    before = harness.rss_mib()
    with harness.PeakSampler() as sampler:
        block = b"x" * (64 * 2**20)  # every page written
    del block
    assert sampler.peak - before > 32


def test_accuracy_variants_are_valid_config_overrides():
    """Every variant of `accuracy_variants.yaml` is a list of overrides that the accuracy config accepts."""
    import yaml

    from upt_keras.config import load_config

    variants = yaml.safe_load((BENCHMARKS / "accuracy_variants.yaml").read_text())
    assert variants["default"] == []
    config = BENCHMARKS.parent / "configs" / "train_burgers1d.yaml"
    for name, overrides in variants.items():
        assert isinstance(name, str) and isinstance(overrides, list), name
        assert all(isinstance(o, str) and "=" in o for o in overrides), name
        load_config(str(config), overrides)  # raises on an unknown key or a bad value


def _benchmark_imports(name):
    """The benchmark modules that `benchmarks/<name>.py` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse((BENCHMARKS / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found & set(MODULES) - {name}


def test_no_import_cycle_between_benchmark_modules():
    graph = {name: _benchmark_imports(name) for name in MODULES}
    assert graph["harness"] == set()  # the harness stands below every script

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, seen + (n,))) for n in graph[start])

    assert [name for name in MODULES if reaches(name, name)] == []


def test_every_benchmark_module_imports_without_running(tmp_path):
    """A fresh interpreter imports each module: nothing printed, no file written, no child started."""
    names = [n for n in MODULES if n != "torch_reference" or _has("torch")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    before = _files(BENCHMARKS)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code] + names, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
    assert _files(BENCHMARKS) == before


def _files(folder):
    return sorted(str(p) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _accuracy_row(dataset, one_step, fno_one_step):
    curve = {"nrmse_mean": 0.1, "nrmse_last": 0.2, "nrmse_per_step": [0.05, 0.1, 0.2]}
    return {"dataset": dataset, "budget": 300.0, "variant": "default",
            "upt": {"one_step": one_step, "identity_one_step": 0.03, "train_steps": 10, "latent": curve,
                    "physical": curve, "identity": curve,
                    "timing": {"latent_all_frames": 1.0, "latent_last_frame": 0.5, "physical": 2.0}},
            "fno": {"one_step": fno_one_step, "train_steps": 12, "rollout": curve, "timing": {"rollout": 1.5}}}


def test_accuracy_reports_name_their_figures_after_themselves(tmp_path):
    """Two reports on the same data set write two figures: one never overwrites the other's."""
    pytest.importorskip("matplotlib")
    from accuracy_report import write_report

    meta = {"command": "bench", "machine": "m", "keras": "3", "backend": "torch", "date": "d"}
    write_report([{"meta": meta, "results": [_accuracy_row("b1d", 0.005, 0.01)]}], str(tmp_path / "first.md"))
    write_report([{"meta": meta, "results": [_accuracy_row("b1d", 0.004, 0.01)]}], str(tmp_path / "second.md"))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["first_b1d.png", "second_b1d.png"]
    first, second = (tmp_path / "first.md").read_text(), (tmp_path / "second.md").read_text()
    assert "![b1d rollout](first_b1d.png)" in first and "| 0.50x |" in first
    assert "![b1d rollout](second_b1d.png)" in second and "| 0.40x |" in second


def test_error_spectrum_puts_each_wave_in_its_band():
    """`error_spectrum.band_powers`: a wave of radial wavenumber |k| lands in the band holding |k| only, on 1D and
    2D grids, with the power Parseval gives it."""
    import numpy as np

    import error_spectrum

    x = np.arange(64) / 64
    wave = np.sin(2 * np.pi * 5 * x)[None, :, None]  # |k| = 5, (1, 64, 1)
    power = error_spectrum.band_powers(wave)
    assert power[1] == pytest.approx(64 ** 2 / 2) and np.allclose(np.delete(power, 1), 0, atol=1e-6)
    yy, xx = np.meshgrid(x, x, indexing="ij")
    fields = np.stack([np.cos(2 * np.pi * (3 * yy + 4 * xx)), np.sin(2 * np.pi * 12 * xx)], -1)[None]  # 5, 12
    power = error_spectrum.band_powers(fields)
    assert power[1] == pytest.approx(4096 ** 2 / 2) and power[2] == pytest.approx(4096 ** 2 / 2)
    assert np.allclose(power[[0, 3, 4]], 0, atol=1e-3)
