"""What `UPT.compute_loss` optimises: the objective (`upt_objective.UPTObjective`) and its settings (`settings`), the
field and latent losses (`losses`) and the query sampling (`sampling.QuerySampler`)."""

from upt_keras.objectives.losses import field_mse, field_relative_l2, latent_mse
from upt_keras.objectives.sampling import QuerySampler
from upt_keras.objectives.settings import ObjectiveSettings
from upt_keras.objectives.upt_objective import UPTObjective

__all__ = ["ObjectiveSettings", "QuerySampler", "UPTObjective", "field_mse", "field_relative_l2", "latent_mse"]
