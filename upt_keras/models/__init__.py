"""The model (`UPT`: encode -> step -> decode -> rollout) and its named sizes (`PRESETS`)."""

from upt_keras.models.presets import GRID_PRESETS, PRESETS, SIZE_DEFAULTS, build_parts, preset
from upt_keras.models.upt import UPT

__all__ = ["UPT", "PRESETS", "GRID_PRESETS", "SIZE_DEFAULTS", "build_parts", "preset"]
