"""The model (`UPT`: encode -> step -> decode -> rollout) and its named sizes (`PRESETS`).

The sizes (`upt_keras.models.presets`) import no deep-learning framework; `UPT` is imported, and Keras with it, when
it is first used."""

from upt_keras._lazy import lazy_exports
from upt_keras.models.presets import GRID_PRESETS, PRESETS, SIZE_DEFAULTS, build_parts, preset

__all__ = ["UPT", "PRESETS", "GRID_PRESETS", "SIZE_DEFAULTS", "build_parts", "preset"]
__getattr__, __dir__ = lazy_exports(__name__, {"UPT": "upt_keras.models.upt"})
