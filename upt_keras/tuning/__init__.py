"""Hyper-parameter search (KerasTuner) over the inverse-loss weights, the number of queries and the inverse-loss
frequency of a UPT, starting from a training config.

```python
from upt_keras.config import load_config
from upt_keras import tuning

cfg = load_config("configs/train_burgers1d.yaml", overrides=["training.epochs=8"])
space = tuning.load_tuning_config("tuning.yaml")          # or None: DEFAULT_TUNING
result = tuning.tune(cfg, space, tuner="bayesian", max_trials=12, directory="tuning", project_name="b1d")
print(tuning.format_table(result.rows, result.objective))
# tuning/b1d/summary.md, summary.csv, best_config.yaml  (upt-keras train --config tuning/b1d/best_config.yaml)
```

What is searched, and where it enters (`UPTHyperModel`):

| hyper-parameter          | KerasTuner name                   | enters in                                          |
|--------------------------|-----------------------------------|----------------------------------------------------|
| `num_queries` Q          | `num_queries` (choice of ints)    | `build(hp)`: a constructor argument of `UPT`       |
| `inverse_loss_frequency` | `inverse_loss_frequency` (choice) | `build(hp)`: a constructor argument of `UPT`       |
| `lambda_inv_enc`         | `lambda_inv_enc` (+ `inv_enc_on`) | `fit(hp, model)`: the model's variable, attribute, |
|                          |                                   | and the trial's `InverseLossCurriculum`            |
| `lambda_inv_dec`         | `lambda_inv_dec` (+ `inv_dec_on`) | `fit(hp, model)`: likewise                         |

The objective is always an unweighted validation metric, minimised: `val_forward_loss` (the one-step MSE on all grid
points, as logged by `UPT`; the default) or `val_nrmse` (one-step nRMSE in physical units on the validation split,
computed at the end of every epoch). The training total, whose inverse-loss terms change with the trial's weights,
is never a valid objective: trials with larger weights would look worse for that reason alone.

The search space is a `tuning:` section in its own YAML file (the training config is not changed):

```yaml
tuning:
  objective: val_forward_loss      # or val_nrmse
  lambda_inv_enc:                  # a range ...
    min: 1.0e-4
    max: null                      # null: training.inverse_loss_max_weight (the curriculum's cap)
    sampling: log                  # log | linear
    allow_zero: true               # also try 0 (the term switched off), via the boolean `inv_enc_on`
  lambda_inv_dec: 0.01             # ... or a fixed number, or null (the training config's value)
  num_queries:
    fractions: [0.25, 0.5, 1.0]    # of the N grid points (1.0: every point, query sampling off) ...
    # values: [64, 128, 256]       # ... or absolute counts (<= N), or a single int, or null
  inverse_loss_frequency: [1, 2]   # a list of ints, an int, or null (the training config's value)
```

Keys left out take the values of `DEFAULT_TUNING`. A search directory `D/P` holds KerasTuner's files (`oracle.json`,
`trial_*/`), `search.json` (the base config and the resolved space, checked when a search resumes), and, once the
search ends, `summary.md`, `summary.csv` and `best_config.yaml` (the base config with the best trial's values; it is
a complete training config). Rerunning the same search resumes it: finished trials are kept, an interrupted trial
is run again, and `max_trials` may be raised to add trials.

Two modules: `upt_keras.tuning.search_space` (the search space: `parse_tuning`, `resolve_space`, ...; it imports
neither Keras nor KerasTuner) and `upt_keras.tuning.search` (the hypermodel, the tuner, the summaries; it imports
KerasTuner). This package exports both, and imports the second only when one of its names is first used, so that
`upt-keras` commands other than `tune` never load KerasTuner. KerasTuner (and scikit-learn, for the bayesian
tuner) come with the `tune` extra (`pip install "upt-keras[tune]"`); without it, the first use of one of the search's
names raises `MissingExtra` (an `ImportError`) saying so, and the search space still works. The callbacks a trial uses
(`StepTimer`, `ValidationNRMSE`, `TimeBudget`) live in `upt_keras.training.callbacks`.
"""

from upt_keras._lazy import lazy_exports
from upt_keras.tuning.search_space import (DEFAULT_TUNING, LAMBDAS, OBJECTIVES, SWITCHES, TUNERS, SearchSpace,
                                           effective_values, load_tuning_config, parse_tuning, resolve_space,
                                           trial_config)

#: Names of `upt_keras.tuning.search` (which imports KerasTuner), loaded on first use.
_SEARCH_NAMES = ("TuneResult", "UPTHyperModel", "make_tuner", "tune", "summary_rows", "format_table", "write_summary",
                 "write_best_config", "run_tune", "set_inverse_weights")

__all__ = ["DEFAULT_TUNING", "LAMBDAS", "OBJECTIVES", "SWITCHES", "TUNERS", "SearchSpace", "effective_values",
           "load_tuning_config", "parse_tuning", "resolve_space", "trial_config", *_SEARCH_NAMES]


__getattr__, __dir__ = lazy_exports(__name__, {name: "upt_keras.tuning.search" for name in _SEARCH_NAMES})
