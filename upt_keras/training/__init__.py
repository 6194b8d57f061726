"""The training pipeline: config -> data -> compiled UPT -> callbacks -> fit -> physical-space evaluation.

Each step is a public function, so that scripts, the `upt-keras` command line and hyper-parameter searches can reuse
the parts they need:

```python
from upt_keras.config import load_config
from upt_keras import training

cfg = load_config("configs/train_burgers1d.yaml", overrides=["training.epochs=5"])
model, history, metrics = training.train(cfg, run_dir="runs/quick")   # everything below, in one call

data = training.prepare_data(cfg)                      # splits, normalisation (train split only), datasets
model = training.build_model(cfg, data)                # compiled UPT (AdamW, lr schedule, precision policy)
callbacks = training.make_callbacks(cfg, "runs/quick", data=data)   # validation, checkpoints, histories
model.fit(data.train, epochs=cfg.training.epochs, callbacks=callbacks)
```

A run directory holds:

| file                 | written by                 | content                                                     |
|----------------------|----------------------------|-------------------------------------------------------------|
| `config.yaml`        | `train`                    | the resolved configuration (every key, defaults included)   |
| `normalization.json` | `train`                    | per-channel mean/std of the training split, dt, grid shape  |
| `model.keras`        | `Validation`               | the best model so far on `val_forward_loss`                 |
| `backup/`            | `RunCheckpoint`            | the resumable state (removed when `train` ends training)    |
| `history.csv`        | `CSVLogger`                | one row per epoch (appended to when a run resumes)          |
| `history_steps.csv`  | `StepLog`                  | a row every `output.log_every_steps` steps and per validation |
| `logs/`              | `TensorBoard` (optional)   | TensorBoard event files                                     |
| `metrics.json`, PNGs | `upt_keras.evaluation`     | test metrics in physical units and figures                  |

Resuming: when `run_dir/backup` holds a state, `train` continues the interrupted run at the step it reached
(weights, optimizer state and step count, the position in the epoch and its pair order): a kill loses at most
`training.checkpoint_every_steps` steps, SIGINT / SIGTERM none (they save before exiting). The configuration must
be the one the interrupted run used; otherwise a `ConfigError` says so.

Early stopping and the best checkpoint watch `val_forward_loss` (the unweighted one-step loss), never the total loss,
whose inverse-loss terms ramp up during training.
"""

from upt_keras.training.callbacks import (BudgetSchedule, InverseLossCurriculum, StepTimer, TimeBudget,
                                          ValidationNRMSE, curriculum_weight)
from upt_keras.training.data import PreparedData, prepare_data
from upt_keras.training.checkpoint import RunCheckpoint, TrainingInterrupted
from upt_keras.training.monitoring import RunState, StepLog, TrainingProgress, Validation
from upt_keras.training.pipeline import (BACKUP_DIR, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, NORMALIZATION_FILE,
                                         STEP_HISTORY_FILE, backup_epoch, make_callbacks, train)
from upt_keras.training.setup import (GLOBAL_CLIPNORM, build_model, make_lr_schedule,
                                      make_optimizer, model_kwargs, objective_kwargs, precision_policy, seed_everything)

__all__ = [
    "BACKUP_DIR",
    "CONFIG_FILE",
    "GLOBAL_CLIPNORM",
    "HISTORY_FILE",
    "STEP_HISTORY_FILE",
    "MODEL_FILE",
    "NORMALIZATION_FILE",
    "PreparedData",
    "prepare_data",
    "precision_policy",
    "make_lr_schedule",
    "make_optimizer",
    "model_kwargs",
    "objective_kwargs",
    "seed_everything",
    "build_model",
    "make_callbacks",
    "backup_epoch",
    "train",
    "InverseLossCurriculum",
    "TimeBudget",
    "BudgetSchedule",
    "StepTimer",
    "ValidationNRMSE",
    "curriculum_weight",
    "RunCheckpoint",
    "TrainingInterrupted",
    "RunState",
    "StepLog",
    "TrainingProgress",
    "Validation",
]
