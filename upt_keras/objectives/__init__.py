"""What `UPT.compute_loss` optimises: the objective (`upt_objective.UPTObjective`) and its settings (`settings`), the
field and latent losses (`losses`) and the query sampling (`sampling.QuerySampler`).

The settings import no deep-learning framework; the other names are imported, and Keras with them, when first used."""

from upt_keras._lazy import lazy_exports
from upt_keras.objectives.settings import OBJECTIVE_KEYS, ObjectiveSettings

_EXPORTS = {"QuerySampler": "upt_keras.objectives.sampling", "UPTObjective": "upt_keras.objectives.upt_objective",
            **{name: "upt_keras.objectives.losses" for name in ("field_mse", "field_relative_l2", "latent_mse")}}
__all__ = ["OBJECTIVE_KEYS", "ObjectiveSettings", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
