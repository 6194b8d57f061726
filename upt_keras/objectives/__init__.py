"""What `UPT.compute_loss` optimises: the terms (`upt_objective`), the field and latent losses (`losses`) and the
query sampling (`sampling.QuerySampler`)."""

from upt_keras.objectives.losses import field_mse, field_relative_l2, latent_mse
from upt_keras.objectives.sampling import QuerySampler

__all__ = ["QuerySampler", "field_mse", "field_relative_l2", "latent_mse"]
