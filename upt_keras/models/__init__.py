"""The model (`UPT`: encode -> step -> decode -> rollout) and its named sizes (`PRESETS`).

The sizes (`upt_keras.models.presets`) import no deep-learning framework; `UPT` is imported, and Keras with it, when
it is first used."""

from upt_keras.models.presets import GRID_PRESETS, PRESETS, SIZE_DEFAULTS, build_parts, preset

__all__ = ["UPT", "PRESETS", "GRID_PRESETS", "SIZE_DEFAULTS", "build_parts", "preset"]


def __getattr__(name):
    if name == "UPT":
        from upt_keras.models.upt import UPT

        return UPT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
