"""KerasTuner search over the inverse-loss weights, Q and the inverse-loss frequency (`upt_keras.tuning`).

One tiny search (2 trials, 1 epoch of 1 step each) is shared by the tests of this module; the resume test, which
extends it to 3 trials, runs last. On TensorFlow the search trials run eagerly (`run_eagerly`) because tracing a
training step costs far more than the whole tiny trial; on JAX they run compiled (with a compilation cache shared by
identical programs), so the check that a compiled step applies the trial's weights runs there. The re-training of
the best configuration goes through `upt-keras train` unchanged (compiled as configured) on every backend.
"""

import csv
import json
import os

import numpy as np
import pytest
import yaml

import keras

from upt_keras import cli, tuning
from upt_keras.config import ConfigError, load_config
from upt_keras.data import generate_burgers_dataset

keras_tuner = pytest.importorskip("keras_tuner",
                                  reason='the search needs the tune extra: pip install "upt-keras[tune]"')

BACKEND = keras.backend.backend()

BASE_YAML = """
seed: 0  # KerasTuner 1.4 then draws Q = 16 in all 3 trials (they share compiled programs), one weight 0 twice
data:
  source: hdf5
  path: {path}
  test_fraction: 0.25
  val_fraction: 0.25
  rollout_steps: 2
model:
  encoder_dim: 16
  encoder_depth: 0
  encoder_heads: 2
  num_latent_tokens: 4
  latent_dim: 16
  pooling: average
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
  use_inverse_losses: true
  epochs: 1
  batch_size: 8
  lambda_inv_enc: 0.01
  lambda_inv_dec: 0.01
  inverse_loss_warmup_epochs: 0   # the trial's weights apply from the first step
  inverse_loss_ramp_epochs: 0
  inverse_loss_frequency: 2       # fixed in the search (tuning: null), so trials share compiled programs
output:
  run_dir: {run_dir}
  plots: false
"""

TUNING_YAML = """
tuning:
  objective: val_forward_loss
  lambda_inv_enc: {min: 1.0e-3, max: 0.05, sampling: log, allow_zero: false}
  lambda_inv_dec: {min: 1.0e-3, sampling: log, allow_zero: true}
  num_queries: {fractions: [0.5, 1.0]}
  inverse_loss_frequency: null
"""

N = 32  # grid points of the tiny data set


def _value(variable):
    return float(keras.ops.convert_to_numpy(variable))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", autouse=True)
def _jax_compilation_cache(tmp_path_factory):
    """JAX: a persistent compilation cache for this module only. Trials with the same Q and frequency, and the
    re-training of the best one, compile identical programs; XLA compilation dominates these tiny runs. Falls back
    to no cache if this JAX version lacks the (private) reset hook."""
    if BACKEND != "jax":
        yield
        return
    import jax

    keys = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla_cache")),
            "jax_persistent_cache_min_compile_time_secs": 0.5, "jax_persistent_cache_min_entry_size_bytes": 0}
    try:
        from jax._src import compilation_cache

        compilation_cache.reset_cache  # noqa: B018 (present?)
        before = {key: getattr(jax.config, key) for key in keys}
    except (ImportError, AttributeError):  # pragma: no cover (another JAX version: run without the cache)
        yield
        return
    for key, value in keys.items():
        jax.config.update(key, value)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        for key, value in before.items():
            jax.config.update(key, value)
        compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """4 trajectories of 5 frames on 32 points: 8 training pairs (one batch of 8), 4 validation pairs."""
    root = tmp_path_factory.mktemp("tuning")
    data = str(generate_burgers_dataset(str(root / "tiny.h5"), num_samples=4, resolution=N, t_end=0.04,
                                        progress=False))
    base = root / "base.yaml"
    base.write_text(BASE_YAML.format(path=data, run_dir=root / "run"))
    space = root / "space.yaml"
    space.write_text(TUNING_YAML)
    return {"root": root, "base": str(base), "space": str(space), "directory": str(root / "searches")}


def _spy_class():
    class Spy(tuning.UPTHyperModel):
        """Records, for every fit, the model's weights, Q and frequency before and after training."""

        fits = []

        def build(self, hp):
            model = super().build(hp)
            if BACKEND == "tensorflow":
                model.run_eagerly = True
            return model

        def fit(self, hp, model, *args, **kwargs):
            before = (model.objective.lambda_inv_enc, model.objective.lambda_inv_dec)
            result = super().fit(hp, model, *args, **kwargs)
            Spy.fits.append({
                "values": self.trial_values(hp), "hp": dict(hp.values), "before": before,
                "attributes": (model.objective.lambda_inv_enc, model.objective.lambda_inv_dec),
                "variables": (_value(model.objective.inv_enc_weight), _value(model.objective.inv_dec_weight)),
                "num_queries": model.objective.num_queries, "frequency": model.objective.inverse_loss_frequency,
                "result": result,
            })
            return result

    return Spy


@pytest.fixture(scope="module")
def search(files):
    cfg = load_config(files["base"])
    space = tuning.load_tuning_config(files["space"])
    spy = _spy_class()
    result = tuning.tune(cfg, space, tuner="random", max_trials=2, directory=files["directory"],
                         project_name="tiny", verbose=0, hypermodel_cls=spy)
    return {"result": result, "fits": list(spy.fits), "cfg": cfg}


# ------------------------------------------------------------------------------------------------------- the space


def test_space_defaults_fractions_and_cap():
    cfg = load_config(None, ["training.use_inverse_losses=true", "training.inverse_loss_max_weight=0.03", "training.query_sampling.enabled=true",
                             "training.query_sampling.num_queries=100", "training.epochs=10"])
    space = tuning.resolve_space(None, cfg, num_points=256)
    assert space.objective == "val_forward_loss"
    assert space.num_queries == [64, 128, 256]  # fractions 1/4, 1/2, 1 of N
    assert space.lambdas["lambda_inv_enc"] == {"min": 1e-4, "max": 0.03, "sampling": "log", "allow_zero": True}
    assert space.inverse_loss_frequency == [cfg.training.inverse_loss_frequency]  # null: the config's value
    fixed = tuning.resolve_space({"lambda_inv_enc": None, "lambda_inv_dec": 0.0, "num_queries": None,
                                  "inverse_loss_frequency": [4, 1, 2, 2]}, cfg, num_points=256)
    assert fixed.lambdas == {"lambda_inv_enc": {"fixed": 0.01}, "lambda_inv_dec": {"fixed": 0.0}}
    assert fixed.num_queries == [100] and fixed.inverse_loss_frequency == [1, 2, 4]
    assert tuning.resolve_space({"num_queries": {"values": [16, 8]}}, cfg, 256).num_queries == [8, 16]


@pytest.mark.parametrize("space, overrides, match", [
    ({"objective": "val_loss"}, [], "weighted inverse terms"),
    ({"objective": "loss"}, [], "val_forward_loss | val_nrmse"),
    ({"lambda_inv_encc": 0.1}, [], "did you mean 'tuning.lambda_inv_enc'"),
    ({"lambda_inv_enc": {"min": 1e-3, "maxx": 0.01}}, [], "did you mean 'tuning.lambda_inv_enc.max'"),
    ({"lambda_inv_enc": {"min": 0.0}}, [], "> 0 with log sampling"),
    ({"lambda_inv_enc": {"min": 1e-3, "max": 0.2}}, [], "exceeds training.inverse_loss_max_weight"),
    ({"lambda_inv_dec": 0.5}, [], "exceeds training.inverse_loss_max_weight"),
    ({"num_queries": {"values": [64, 512]}}, [], r"\[512\] exceed the 256 grid points"),
    ({"num_queries": {"fractions": [0.0, 0.5]}}, [], r"fractions\[0\]: Input should be greater than 0, got float 0.0"),
    ({"num_queries": {"fractions": [0.5], "values": [8]}}, [], "exactly one of"),
    ({"inverse_loss_frequency": [0, 2]}, [], r"inverse_loss_frequency\[0\]: Input should be greater than 0"),
    ({}, ["training.use_inverse_losses=false"], "use_inverse_losses is false"),
    ({}, ["training.epochs=3", "training.inverse_loss_warmup_epochs=3"], "at least 5 epochs"),
    ({}, ["training.epochs=2", "training.inverse_loss_warmup_epochs=1"], "at least 3 epochs"),  # ramp starts at 0
])
def test_space_errors_name_the_key(space, overrides, match):
    cfg = load_config(None, ["training.use_inverse_losses=true", *overrides])
    with pytest.raises(ConfigError, match=match):
        tuning.resolve_space(space, cfg, num_points=256)


@pytest.mark.parametrize("space, message", [
    # unknown keys: the nearest valid key, else the keys valid there
    ({"lambda_inv_enc": {"min": 1e-3, "maxx": 0.01}},
     "tuning.lambda_inv_enc.maxx: unknown key (did you mean 'tuning.lambda_inv_enc.max'?)"),
    ({"num_queries": {"fraction": [0.5]}},
     "tuning.num_queries.fraction: unknown key (did you mean 'tuning.num_queries.fractions'?)"),
    ({"zzz": 1}, "tuning.zzz: unknown key (valid keys here: tuning.objective, tuning.lambda_inv_enc, "
                 "tuning.lambda_inv_dec, tuning.num_queries, tuning.inverse_loss_frequency)"),
    # ranges: the dotted key at pydantic's location, its message, the value given
    ({"lambda_inv_enc": {"min": 0.1, "max": 0.01}}, "tuning.lambda_inv_enc.max: must be >= its min, got 0.01 < 0.1"),
    ({"lambda_inv_dec": {"min": -1, "sampling": "linear"}},
     "tuning.lambda_inv_dec.min: Input should be greater than or equal to 0, got int -1"),
    ({"lambda_inv_enc": -0.5}, "tuning.lambda_inv_enc: Input should be greater than or equal to 0, got float -0.5"),
    ({"num_queries": {"fractions": [0.5, 2]}},
     "tuning.num_queries.fractions[1]: Input should be less than or equal to 1, got int 2"),
    ({"inverse_loss_frequency": [2, 0]}, "tuning.inverse_loss_frequency[1]: Input should be greater than 0, got int 0"),
    # types
    ({"lambda_inv_enc": {"allow_zero": 1}},
     "tuning.lambda_inv_enc.allow_zero: Input should be a valid boolean, got int 1"),
    ({"lambda_inv_dec": "abc"}, "tuning.lambda_inv_dec: Input should be a valid number, got str 'abc'"),
    ({"lambda_inv_enc": {"sampling": "lin"}},
     "tuning.lambda_inv_enc.sampling: Input should be 'log' or 'linear', got str 'lin'"),
    ({"num_queries": {"values": [8, 2.5]}},
     "tuning.num_queries.values[1]: Input should be a valid integer, got float 2.5"),
    ({"inverse_loss_frequency": []},
     "tuning.inverse_loss_frequency: List should have at least 1 item after validation, not 0, got list []"),
    ([0.1], "tuning: Input should be a valid dictionary or instance of TuningSpace, got list [0.1]"),
])
def test_tuning_section_messages(space, message):
    with pytest.raises(ConfigError) as info:
        tuning.parse_tuning(space)
    assert str(info.value) == message


def test_tuning_section_normalised():
    space = tuning.parse_tuning({"lambda_inv_enc": "1e-3", "lambda_inv_dec": None, "num_queries": [64, 16, 64],
                                 "inverse_loss_frequency": 2})
    assert space == {"objective": "val_forward_loss", "lambda_inv_enc": 1e-3, "lambda_inv_dec": None,
                     "num_queries": {"values": [16, 64]}, "inverse_loss_frequency": [2]}
    assert tuning.parse_tuning(space) == space  # a parsed space parses to itself
    assert tuning.parse_tuning({"num_queries": {"fractions": 0.5}})["num_queries"] == {"fractions": [0.5]}


def test_tuning_yaml_file(tmp_path, files):
    space = tuning.load_tuning_config(files["space"])
    assert space["num_queries"] == {"fractions": [0.5, 1.0]} and space["inverse_loss_frequency"] is None
    assert space["lambda_inv_dec"] == {"min": 1e-3, "max": None, "sampling": "log", "allow_zero": True}
    assert tuning.load_tuning_config(None) == tuning.parse_tuning(tuning.DEFAULT_TUNING)
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="single 'tuning:' section"):
        tuning.load_tuning_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        tuning.load_tuning_config(tmp_path / "missing.yaml")
    shipped = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "tune_burgers1d.yaml")
    assert tuning.load_tuning_config(shipped)["inverse_loss_frequency"] == [1, 2, 4]


def test_hyperparameters_and_effective_values():
    cfg = load_config(None, ["training.use_inverse_losses=true", "training.epochs=10"])
    space = tuning.resolve_space({"lambda_inv_dec": {"allow_zero": False}, "num_queries": 128,
                                  "inverse_loss_frequency": [2, 1]}, cfg, num_points=256)
    hp = keras_tuner.HyperParameters()
    values = space.declare(hp)
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"inv_enc_on": "Boolean", "lambda_inv_enc": "Float", "lambda_inv_dec": "Float",
                     "num_queries": "Fixed", "inverse_loss_frequency": "Choice"}
    assert hp.get("inverse_loss_frequency") == 1 and values["inverse_loss_frequency"] == 1
    assert values["num_queries"] == 128 and values["lambda_inv_enc"] == pytest.approx(1e-4)
    hp.values["inv_enc_on"] = False  # the switch off: the weight is 0, its range inactive
    assert space.declare(hp)["lambda_inv_enc"] == 0.0
    pinned = tuning.resolve_space({"lambda_inv_enc": {"min": 0.02, "max": 0.02, "allow_zero": True}}, cfg, 256)
    hp = keras_tuner.HyperParameters()
    assert pinned.declare(hp)["lambda_inv_enc"] == 0.02  # "0.02 or 0"
    hp.values["inv_enc_on"] = False
    assert pinned.declare(hp)["lambda_inv_enc"] == 0.0
    assert tuning.effective_values({"inv_enc_on": False, "lambda_inv_dec": 0.02, "num_queries": 64,
                                    "inverse_loss_frequency": 2}) == {
        "lambda_inv_enc": 0.0, "lambda_inv_dec": 0.02, "num_queries": 64, "inverse_loss_frequency": 2}
    trial = tuning.trial_config(cfg, {"lambda_inv_enc": 0.0, "lambda_inv_dec": 0.02, "num_queries": 64,
                                      "inverse_loss_frequency": 2}, num_points=256)
    qs = trial.training.query_sampling
    assert (qs.enabled, qs.num_queries, trial.training.lambda_inv_dec, trial.training.inverse_loss_frequency) == (
        True, 64, 0.02, 2)
    assert not tuning.trial_config(cfg, {**values, "num_queries": 256}, 256).training.query_sampling.enabled


def test_validation_nrmse_callback(files):
    from upt_keras import training
    from upt_keras.evaluation import collect_pairs
    from upt_keras.evaluation.metrics import nrmse

    class Identity:  # predicts u_{t+1} = u_t
        def predict(self, x, batch_size=None, verbose=0):
            return np.asarray(x)

    data = training.prepare_data(load_config(files["base"]), splits=("train", "val"), progress=False)
    callback = training.ValidationNRMSE(data.val)
    callback.set_model(Identity())
    logs = {}
    callback.on_epoch_end(0, logs)
    x, y = collect_pairs(data.val)
    assert logs["val_nrmse"] == pytest.approx(nrmse(x, y)) and logs["val_nrmse"] > 0


def test_tune_command_arguments_and_errors(tmp_path, files, capsys):
    args = cli.build_parser().parse_args([
        "tune", "--config", files["base"], "--tuner", "hyperband", "--max-trials", "3", "--set", "training.epochs=2",
        "-d", str(tmp_path), "-p", "x", "--objective", "val_nrmse"])
    assert (args.tuner, args.max_trials, args.overrides, args.directory, args.project_name, args.objective) == (
        "hyperband", 3, ["training.epochs=2"], str(tmp_path), "x", "val_nrmse")
    assert cli.main(["tune", "--tuner", "grid"]) == 2
    assert cli.main(["tune", "--max-trials", "0"]) == 2
    bad = tmp_path / "space.yaml"
    bad.write_text("tuning:\n  objective: val_loss\n")
    capsys.readouterr()
    assert cli.main(["tune", "--config", files["base"], "--tuning-config", str(bad), "-d", str(tmp_path)]) == 2
    assert "tuning.objective" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "upt")  # refused before any search started
    bad.write_text("tuning:\n  num_queries: {fraction: [0.5]}\n")
    assert cli.main(["tune", "--config", files["base"], "--tuning-config", str(bad), "-d", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        f"{bad}: tuning.num_queries.fraction: unknown key (did you mean 'tuning.num_queries.fractions'?)")


# ------------------------------------------------------------------------------------------------------- the search


def test_search_minimises_the_unweighted_objective(search, files):
    result = search["result"]
    oracle = result.tuner.oracle
    assert oracle.objective.name == "val_forward_loss" and oracle.objective.direction == "min"
    assert result.objective == "val_forward_loss"
    trials = oracle.trials
    assert sorted(trials) == ["0", "1"] and all(t.status == "COMPLETED" for t in trials.values())
    assert len(search["fits"]) == 2 and result.new_trials == ["0", "1"]
    for fit in search["fits"]:
        metrics = fit["result"]
        assert metrics["val_forward_loss"] > 0 and metrics["step_time"] > 0 and metrics["epochs"] == 1
    # The best trial is the one with the lowest val_forward_loss, and the summary lists it first.
    scores = {tid: t.score for tid, t in trials.items()}
    assert result.best_trial_id == min(scores, key=scores.get)
    assert [r["trial"] for r in result.rows] == sorted(scores, key=scores.get)
    # The first row is KerasTuner's best trial: its id, its score (the lowest objective any fit returned) and its
    # hyper-parameters' effective values.
    best, first = oracle.get_best_trials(1)[0], result.rows[0]
    assert first["trial"] == best.trial_id == result.best_trial_id and first["status"] == "COMPLETED"
    assert first["objective"] == best.score == pytest.approx(min(f["result"]["val_forward_loss"]
                                                                 for f in search["fits"]))
    assert {k: first[k] for k in tuning.LAMBDAS + ("num_queries", "inverse_loss_frequency")} == \
        tuning.effective_values(best.hyperparameters.values)
    best_fit = next(f for f in search["fits"] if f["result"]["val_forward_loss"] == pytest.approx(best.score))
    assert first["epochs"] == 1 and first["step_time_ms"] == pytest.approx(1000 * best_fit["result"]["step_time"])
    project = os.path.join(files["directory"], "tiny")
    md = open(os.path.join(project, "summary.md")).read()
    assert "| trial | lambda_inv_enc | lambda_inv_dec | Q | frequency | val_forward_loss |" in md
    assert md.count("| COMPLETED |") == 2
    rows = open(os.path.join(project, "summary.csv")).read().splitlines()
    assert len(rows) == 3 and rows[0].startswith("trial,status,lambda_inv_enc,lambda_inv_dec,num_queries")
    record = json.load(open(os.path.join(project, "search.json")))
    assert record["space"]["objective"] == "val_forward_loss" and record["space"]["num_points"] == N


def test_trial_values_reach_the_model(search):
    for fit in search["fits"]:
        values = fit["values"]
        enc, dec = values["lambda_inv_enc"], values["lambda_inv_dec"]
        assert 1e-3 <= enc <= 0.05 and (dec == 0.0 or 1e-3 <= dec <= 0.05)
        assert fit["hp"]["lambda_inv_enc"] == pytest.approx(enc)
        assert fit["before"] == (0.01, 0.01)  # built with the base weights: fit() set the trial's
        assert fit["attributes"] == (pytest.approx(enc), pytest.approx(dec))
        # The curriculum (no warmup, no ramp) ran with the trial's weights: the model's variables hold them.
        assert fit["variables"] == (pytest.approx(enc, rel=1e-6), pytest.approx(dec, rel=1e-6))
        # ... and the training step used them: the model logs the mean weight it applied.
        metrics = fit["result"]
        assert (metrics["lambda_inv_enc"], metrics["lambda_inv_dec"]) == (pytest.approx(enc, rel=1e-6),
                                                                        pytest.approx(dec, rel=1e-6))
        q = values["num_queries"]
        assert q in (16, 32) and fit["num_queries"] == (q if q < N else None)
        assert fit["frequency"] == values["inverse_loss_frequency"] == 2  # fixed at the base config's value


def test_best_config_retrains_with_upt_keras_train(search, files, tmp_path):
    result = search["result"]
    path = result.files["best_config"]
    assert path == os.path.join(files["directory"], "tiny", "best_config.yaml")
    cfg = load_config(path)
    best = result.rows[0]
    t = cfg.training
    assert (t.lambda_inv_enc, t.lambda_inv_dec) == (pytest.approx(best["lambda_inv_enc"]),
                                                    pytest.approx(best["lambda_inv_dec"]))
    assert t.inverse_loss_frequency == best["inverse_loss_frequency"]
    assert t.query_sampling.num_queries == best["num_queries"] and t.query_sampling.enabled == (
        best["num_queries"] < N)
    # Everything else is the base config.
    base = yaml.safe_load(open(path))
    assert base["model"]["pooling"] == "average" and base["data"]["path"] == search["cfg"].data.path
    run_dir = tmp_path / "best"
    assert cli.main(["train", "--config", path, "--run-dir", str(run_dir), "--verbose", "0"]) == 0
    metrics = json.load(open(run_dir / "metrics.json"))
    assert metrics["training"]["epochs_completed"] == 1
    assert load_config(run_dir / "config.yaml").training.lambda_inv_enc == pytest.approx(t.lambda_inv_enc)


def test_make_tuner_kinds(search, files):
    hypermodel = search["result"].tuner.hypermodel
    band = tuning.make_tuner(hypermodel, "hyperband", 5, files["directory"], "kinds_h", overwrite=True)
    assert isinstance(band.oracle, keras_tuner.oracles.HyperbandOracle) and band.oracle.max_trials == 5
    assert band.oracle.objective.name == "val_forward_loss" and band.oracle.objective.direction == "min"
    with pytest.raises(ConfigError, match="tuner must be one of"):
        tuning.make_tuner(hypermodel, "grid", 2, files["directory"], "kinds_x")
    pytest.importorskip("sklearn", reason="the bayesian tuner needs scikit-learn")
    bayes = tuning.make_tuner(hypermodel, "bayesian", 4, files["directory"], "kinds_b", overwrite=True)
    assert isinstance(bayes.oracle, keras_tuner.oracles.BayesianOptimizationOracle)
    assert bayes.oracle.objective.name == "val_forward_loss" and bayes.oracle.objective.direction == "min"


def test_resume_runs_only_the_missing_trial(search, files, monkeypatch, capsys):
    """Runs last: extends the module's 2-trial search to 3 trials through `upt-keras tune`."""
    project = os.path.join(files["directory"], "tiny")
    finished = {tid: open(os.path.join(project, f"trial_{tid}", "trial.json")).read() for tid in ("0", "1")}
    cls = tuning.UPTHyperModel
    calls = []
    original_fit, original_build = cls.fit, cls.build

    def counting_fit(self, hp, model, *args, **kwargs):
        calls.append(dict(hp.values))
        return original_fit(self, hp, model, *args, **kwargs)

    def build(self, hp):
        model = original_build(self, hp)
        if BACKEND == "tensorflow":
            model.run_eagerly = True
        return model

    monkeypatch.setattr(cls, "fit", counting_fit)
    monkeypatch.setattr(cls, "build", build)
    argv = ["tune", "--config", files["base"], "--tuning-config", files["space"], "--max-trials", "3",
            "--directory", files["directory"], "--project-name", "tiny", "--verbose", "0"]
    assert cli.main(argv) == 0  # `upt-keras tune ...`
    assert len(calls) == 1  # only the new trial trained
    out = capsys.readouterr().out
    assert "1 trial(s) run now, 3 in the search" in out and "| val_forward_loss |" in out
    # The best trial by the scores KerasTuner stored, first in the summary and named with its values.
    scores = {tid: json.load(open(os.path.join(project, f"trial_{tid}", "trial.json")))["score"]
              for tid in ("0", "1", "2")}
    first = next(csv.DictReader(open(os.path.join(project, "summary.csv"))))
    assert first["trial"] == min(scores, key=scores.get) and float(first["objective"]) == min(scores.values())
    assert (f"upt-keras: best trial {first['trial']}: val_forward_loss = {float(first['objective']):.6g} "
            f"(lambda_inv_enc={float(first['lambda_inv_enc']):g} lambda_inv_dec={float(first['lambda_inv_dec']):g} "
            f"num_queries={first['num_queries']} inverse_loss_frequency=2)") in out
    oracle = json.load(open(os.path.join(project, "oracle.json")))
    assert sorted(oracle["end_order"]) == ["0", "1", "2"]
    for tid, text in finished.items():  # the finished trials were neither rerun nor rewritten
        assert open(os.path.join(project, f"trial_{tid}", "trial.json")).read() == text
    assert open(os.path.join(project, "summary.csv")).read().count("COMPLETED") == 3
    load_config(os.path.join(project, "best_config.yaml"))
    # Resuming with other settings is refused before anything trains.
    assert cli.main(argv + ["--set", "training.learning_rate=0.01"]) == 2
    assert "different settings (base_config.training.learning_rate" in capsys.readouterr().err
    assert len(calls) == 1
