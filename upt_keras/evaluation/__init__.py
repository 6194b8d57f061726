"""Test-set evaluation in physical units (`evaluate`, one-step and rollout metrics, the identity baseline), the
metrics themselves (`metrics`) and the figures (`plots`). See `upt_keras.evaluation.protocol` for the protocol."""

from upt_keras.evaluation.protocol import (METRICS_FILE, ROLLOUT_MODES, collect_pairs, curve_summary, evaluate,
                                           format_summary, one_step_metrics, rollout_arrays, rollout_metrics,
                                           write_metrics, write_plots)

__all__ = [
    "METRICS_FILE",
    "ROLLOUT_MODES",
    "collect_pairs",
    "curve_summary",
    "evaluate",
    "format_summary",
    "one_step_metrics",
    "rollout_arrays",
    "rollout_metrics",
    "write_metrics",
    "write_plots",
]
