import glob
import os
import subprocess
import sys

import pytest
import yaml

from upt_keras.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
    validate_for_grid,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "train_*.yaml")))  # tune_*.yaml: search spaces


def _error(data=None, overrides=()):
    with pytest.raises(ConfigError) as info:
        if overrides:
            load_config(None, overrides=overrides)
        else:
            config_from_dict(data)
    return str(info.value)


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.seed == 0
    assert cfg.data.source == "default" and cfg.data.path is None
    assert cfg.model.frequencies == [1, 2, 4, 8, 16, 32]
    assert cfg.training.lambda_inv_enc == 0.01
    assert cfg.training.query_sampling.num_queries == 2048
    assert cfg.training.jit_compile == "auto"
    assert cfg.training.amp_policy is None
    assert cfg.training.ramp_epochs == cfg.training.inverse_loss_warmup_epochs == 5
    assert cfg.output.run_dir == "runs/burgers1d"
    # default lists are not shared between instances
    Config().model.frequencies.append(64)
    assert Config().model.frequencies == [1, 2, 4, 8, 16, 32]


def test_partial_dict_and_empty_sections_take_defaults():
    cfg = config_from_dict({"training": {"epochs": 3}, "model": None})
    assert cfg.training.epochs == 3
    assert cfg.training.batch_size == 32
    assert cfg.model == Config().model


@pytest.mark.parametrize(
    "data, must_contain",
    [
        # each message starts at pydantic's location of the error, as a dotted key
        ({"trainin": {}}, ["trainin: unknown key (did you mean 'training'?)"]),
        ({"training": {"lamda_inv_enc": 0.1}},
         ["training.lamda_inv_enc: unknown key (did you mean 'training.lambda_inv_enc'?)"]),
        ({"training": {"query_sampling": {"num_querie": 3}}},
         ["training.query_sampling.num_querie: unknown key (did you mean 'training.query_sampling.num_queries'?)"]),
        ({"lambda_inv_enc": 0.1},  # a key in the wrong section
         ["lambda_inv_enc: unknown key (did you mean 'training.lambda_inv_enc'?)"]),
        ({"training": {"zzz": 1}},  # nothing near
         ["training.zzz: unknown key (valid keys here: training.", "training.epochs, "]),
        ({"training": {"lambda_inv_enc": -0.1}},
         ["training.lambda_inv_enc: Input should be greater than or equal to 0, got float -0.1"]),
        ({"training": {"lambda_inv_dec": -1}}, ["training.lambda_inv_dec: ", "got int -1"]),
        ({"model": {"frequencies": [1, 0, 4]}}, ["model.frequencies[1]: Input should be greater than 0, got int 0"]),
        ({"model": {"frequencies": []}}, ["model.frequencies: List should have at least 1 item", "got list []"]),
        ({"model": {"frequencies": [1, "a"]}}, ["model.frequencies[1]: must be a number, got str 'a'"]),
        ({"model": {"frequencies": 4}}, ["model.frequencies: Input should be a valid list, got int 4"]),
        ({"training": {"query_sampling": {"strategy": "random"}}},
         ["training.query_sampling.strategy: Input should be 'uniform' or 'stratified', got str 'random'"]),
        ({"model": {"pooling": "max"}}, ["model.pooling: Input should be 'perceiver' or 'average', got str 'max'"]),
        ({"training": {"epochs": "ten"}}, ["training.epochs: Input should be a valid integer, got str 'ten'"]),
        ({"training": {"epochs": 2.5}}, ["training.epochs: Input should be a valid integer, got float 2.5"]),
        ({"training": {"learning_rate": "fast"}},
         ["training.learning_rate: Input should be a valid number, got str 'fast'"]),
        ({"training": {"batch_size": True}}, ["training.batch_size: ", "got bool True"]),  # bools are not ints
        ({"training": {"learning_rate": True}}, ["training.learning_rate: ", "got bool True"]),
        ({"training": {"learning_rate": float("inf")}}, ["training.learning_rate: Input should be a finite number"]),
        ({"training": {"use_inverse_losses": 1}},
         ["training.use_inverse_losses: Input should be a valid boolean, got int 1"]),
        ({"training": {"amp": "fp16"}}, ["training.amp: must be one of true | false | mixed_float16 | mixed_bfloat16",
                                         "got str 'fp16'"]),
        ({"training": {"jit_compile": "yes"}}, ["training.jit_compile: ", "got str 'yes'"]),
        ({"training": {"distribution": "model_parallel"}},
         ["training.distribution: Input should be 'data_parallel', got str 'model_parallel'"]),
        ({"training": {"time_budget_seconds": 0}},
         ["training.time_budget_seconds: Input should be greater than 0, got int 0"]),
        ({"training": {"early_stopping_patience": 0}}, ["training.early_stopping_patience: ", "got int 0"]),
        ({"training": {"epochs": None}}, ["training.epochs: Input should be a valid integer, got null"]),
        ({"training": 5}, ["training: Input should be a valid dictionary", "got int 5"]),
        ({"data": {"source": "hdf5"}}, ["data.path is required when data.source is 'hdf5', got null"]),
        ({"data": {"source": "s3"}}, ["data.source: ", "got str 's3'"]),
        ({"data": {"path": " "}}, ["data.path: must be a non-empty string, got ' '"]),
        ({"data": {"reduced_resolution": 0}}, ["data.reduced_resolution: Input should be greater than or equal to 1"]),
        ({"data": {"test_fraction": 1.0}}, ["data.test_fraction: Input should be less than 1, got float 1.0"]),
        ({"data": {"test_fraction": 0.5, "val_fraction": 0.6}}, ["data.test_fraction", "data.val_fraction", "0.6"]),
        ({"model": {"decoder_width": 130, "decoder_heads": 4}}, ["model.decoder_width", "model.decoder_heads", "130"]),
        ({"seed": -1}, ["seed: Input should be greater than or equal to 0, got int -1"]),
    ],
)
def test_bad_values_name_key_and_value(data, must_contain):
    msg = _error(data)
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_ints_accepted_for_floats_and_float_strings():
    cfg = config_from_dict({"training": {"learning_rate": 1, "weight_decay": "1e-5", "time_budget_seconds": 60}})
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.training.learning_rate, float)
    assert cfg.training.weight_decay == 1e-5  # YAML 1.1 reads 1e-5 as a string
    assert cfg.training.time_budget_seconds == 60.0
    cfg = config_from_dict({"model": {"frequencies": [0.5, 1, 2.0]}, "training": {"amp": "mixed_bfloat16"}})
    assert cfg.model.frequencies == [0.5, 1, 2.0]
    assert cfg.training.amp_policy == "mixed_bfloat16"
    assert config_from_dict({"training": {"amp": True}}).training.amp_policy == "mixed_float16"


def test_hdf5_with_path_is_valid():
    cfg = config_from_dict({"data": {"source": "hdf5", "path": "data/x.h5"}})
    assert cfg.data.path == "data/x.h5"


def test_validate_for_grid():
    cfg = Config()
    validate_for_grid(cfg, (256,))
    validate_for_grid(cfg, (64, 64))
    with pytest.raises(ConfigError) as info:
        validate_for_grid(cfg, (64, 30))
    msg = str(info.value)
    assert "model.patch_size" in msg and "4" in msg and "(64, 30)" in msg

    # Q larger than the grid only matters while sampling is enabled
    big_q = config_from_dict({"training": {"query_sampling": {"num_queries": 2048}}})
    validate_for_grid(big_q, (1024,))
    big_q.training.query_sampling.enabled = True
    with pytest.raises(ConfigError) as info:
        validate_for_grid(big_q, (1024,))
    msg = str(info.value)
    assert "training.query_sampling.num_queries" in msg and "2048" in msg and "1024" in msg
    validate_for_grid(big_q, (64, 64))  # 4096 points >= 2048


def test_assignment_is_checked():
    cfg = Config()
    with pytest.raises(ConfigError, match="^epochs: Input should be greater than or equal to 1, got int 0$"):
        cfg.training.epochs = 0
    with pytest.raises(ConfigError, match="model.decoder_width must be divisible by model.decoder_heads"):
        cfg.model.decoder_heads = 3
    cfg.training.learning_rate = 1
    assert cfg.training.learning_rate == 1.0 and isinstance(cfg.training.learning_rate, float)


def test_overrides():
    cfg = load_config(
        None,
        overrides=[
            "training.lambda_inv_enc=0.02",
            "training.query_sampling.num_queries=512",
            "training.query_sampling.enabled=true",
            "training.learning_rate=1e-3",
            "model.frequencies=[1, 2, 4]",
            "training.early_stopping_patience=null",
            "data.path=some/file.h5",
            "seed=7",
        ],
    )
    assert cfg.training.lambda_inv_enc == 0.02
    assert cfg.training.query_sampling.num_queries == 512
    assert cfg.training.query_sampling.enabled is True
    assert cfg.training.learning_rate == 1e-3
    assert cfg.model.frequencies == [1, 2, 4]
    assert cfg.training.early_stopping_patience is None
    assert cfg.data.path == "some/file.h5"
    assert cfg.seed == 7


def test_overrides_apply_on_top_of_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 3\n  lambda_inv_enc: 0.5\n")
    cfg = load_config(path, overrides=["training.lambda_inv_enc=0.02"])
    assert cfg.training.epochs == 3 and cfg.training.lambda_inv_enc == 0.02


@pytest.mark.parametrize(
    "override, must_contain",
    [
        ("training.lamda_inv_enc=0.02", ["training.lamda_inv_enc", "did you mean 'training.lambda_inv_enc'"]),
        ("training.query_sampling.num_queries=many", ["training.query_sampling.num_queries", "'many'"]),
        ("training.lambda_inv_enc=-1", ["training.lambda_inv_enc", "-1"]),
        ("trainig.epochs=3", ["trainig.epochs", "training"]),
        ("seed.value=3", ["seed.value"]),
        ("training.epochs", ["training.epochs", "key.path=value"]),
        ("model.frequencies=[1, 2", ["model.frequencies", "[1, 2"]),
    ],
)
def test_bad_overrides(override, must_contain):
    msg = _error(overrides=[override])
    for part in must_contain:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_round_trip(tmp_path):
    cfg = load_config(None, overrides=["training.amp=mixed_bfloat16", "model.frequencies=[0.5, 3]",
                                       "data.max_train_samples=100", "training.jit_compile=false"])
    path = tmp_path / "sub" / "saved.yaml"
    save_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert config_to_dict(again) == config_to_dict(cfg)
    # the file holds every key, as plain YAML
    raw = yaml.safe_load(path.read_text())
    assert set(raw) == {"seed", "data", "model", "training", "output"}
    assert raw["training"]["query_sampling"]["num_queries"] == 2048


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("training:\n  lamda_inv_enc: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(typo)
    assert str(info.value) == f"{typo}: training.lamda_inv_enc: unknown key (did you mean 'training.lambda_inv_enc'?)"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


def test_shipped_configs_fit_their_grids():
    assert {os.path.basename(p) for p in CONFIG_FILES} >= {
        "train_burgers1d.yaml", "train_burgers_upt_full.yaml", "train_burgers2d_64.yaml"}
    c1 = load_config(os.path.join(REPO, "configs", "train_burgers1d.yaml"))
    validate_for_grid(c1, (256,))
    # the accuracy settings of the default (benchmarks/results/results_accuracy.md)
    assert c1.model.decoder_locality and c1.model.pooling == "average" and c1.model.approximator_zero_init
    assert c1.training.lambda_latent_consistency > 0 and c1.training.fit_schedule_to_budget
    assert c1.model.residual and c1.training.rollout_loss_steps == 2
    assert c1.training.use_inverse_losses and c1.training.inverse_loss_frequency == 1  # reconstruction on every step
    assert (c1.training.lambda_inv_enc, c1.training.lambda_inv_dec, c1.training.inverse_loss_max_weight) == (1, 0, 1)
    assert c1.training.time_budget_seconds == 300
    assert not c1.training.query_sampling.enabled
    assert c1.training.batch_size == 8  # more, cheaper steps (benchmarks/results/results_accuracy_1d_b8.md)
    # the relative L2 error as the forward loss, consistency at 0.3 (benchmarks/results/results_accuracy_1d_relative.md)
    assert c1.training.forward_loss == "relative" and c1.training.lambda_latent_consistency == 0.3
    # validation on 16 trajectories: the whole split took a third of a 60 s budget on the 512-trajectory sines set
    assert c1.data.max_val_samples == 16

    full = load_config(os.path.join(REPO, "configs", "train_burgers_upt_full.yaml"))
    validate_for_grid(full, (256,))
    qs = full.training.query_sampling
    assert qs.enabled and qs.strategy == "stratified" and qs.num_queries == 128
    assert full.training.amp_policy == "mixed_float16" and full.training.use_inverse_losses

    c2 = load_config(os.path.join(REPO, "configs", "train_burgers2d_64.yaml"))
    validate_for_grid(c2, (64, 64))
    assert c2.data.source == "hdf5" and c2.data.path
    assert c2.model.frequencies == [1, 2, 4, 8]
    assert (c2.model.num_latent_tokens, c2.model.latent_dim) == (128, 128)
    assert (c2.model.approximator_width, c2.model.approximator_depth, c2.model.approximator_heads) == (256, 8, 8)
    assert (c2.model.decoder_width, c2.model.decoder_depth, c2.model.decoder_heads, c2.model.decoder_mlp_dim) == (
        256, 3, 4, 256)
    assert c2.training.query_sampling.num_queries == 2048 and c2.training.batch_size == 10

    # the 2D CPU default carries the 1D default's recipe: residual, zero-initialised local model, reconstruction,
    # 2-step loss, step-normalised consistency, a time budget; Q = 256 stratified queries of the 4096 points
    d2 = load_config(os.path.join(REPO, "configs", "train_burgers2d.yaml"))
    validate_for_grid(d2, (64, 64))
    assert d2.model.preset == "b2d" and d2.model.residual and d2.model.approximator_zero_init
    assert d2.model.approximator_locality and d2.model.decoder_locality and d2.model.pooling == "average"
    assert d2.training.rollout_loss_steps == 2 and d2.training.lambda_latent_consistency > 0
    # the 1D default's objective: relative forward loss, consistency 0.3 (results_accuracy_2d_training_budget.md)
    assert d2.training.forward_loss == "relative" and d2.training.lambda_latent_consistency == 0.3
    assert (d2.training.lambda_inv_enc, d2.training.lambda_inv_dec) == (1, 0) and d2.training.time_budget_seconds
    qs2 = d2.training.query_sampling
    assert qs2.enabled and (qs2.num_queries, qs2.strategy) == (256, "stratified") and d2.training.batch_size == 8

    # the point-cloud config: the grid recipe and objective on scattered points, 512 uniform queries, batches of 8
    p2 = load_config(os.path.join(REPO, "configs", "train_points2d.yaml"))
    qsp = p2.training.query_sampling
    assert p2.model.preset == "points64" and p2.model.residual and p2.data.input_points_fraction == 0.5
    assert qsp.enabled and (qsp.num_queries, qsp.strategy) == (512, "uniform") and p2.training.batch_size == 8
    # one objective for every default (results_points_objective.md)
    assert p2.training.forward_loss == "relative" and p2.training.lambda_latent_consistency == 0.3


def test_light_modules_import_no_framework():
    # Load the modules by file (bypassing the package __init__) and check nothing heavy came with them.
    code = (
        "import importlib.util, sys\n"
        # in import order: config is built on the size and objective declarations, and each on the schema
        "for name in ('schema', 'models.presets', 'objectives.settings', 'config', 'evaluation.metrics',"
        " 'evaluation.plots'):\n"
        f"    path = {REPO!r} + '/upt_keras/' + name.replace('.', '/') + '.py'\n"
        "    spec = importlib.util.spec_from_file_location('upt_keras.' + name, path)\n"
        "    mod = importlib.util.module_from_spec(spec); sys.modules['upt_keras.' + name] = mod\n"
        "    spec.loader.exec_module(mod)\n"
        "assert 'upt_keras' not in sys.modules  # the package (and its framework imports) was never loaded\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'jax', 'keras', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
