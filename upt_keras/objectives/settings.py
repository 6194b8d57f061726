"""The training objective's settings, declared once: `UPTObjective` takes them as arguments and the config's
`training:` section is built on the same declaration (`upt_keras.config.TrainingConfig`).

Query sampling is not here: the objective takes `num_queries` / `query_strategy` / `seed`, the config nests them
under `training.query_sampling`. This module imports no deep-learning framework.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from upt_keras.schema import Bool, Float, Int, Section, config_error, one_of


class ObjectiveSettings(Section):
    """What `compute_loss` optimises besides the one-step forward error (see `UPTObjective`)."""

    # the forward (and rollout) term's error: MSE in normalised units, or relative L2 per sample (nRMSE as a loss)
    forward_loss: one_of("mse", "relative") = "mse"
    forward_loss_weight: Float = Field(1.0, ge=0.0)
    rollout_loss_steps: Int = Field(1, ge=1)  # K > 1: forward loss over K latent steps (K-step targets)
    use_inverse_losses: Bool = False  # the inverse terms, their weights as variables a curriculum can set
    lambda_inv_enc: Float = Field(0.01, ge=0.0)
    lambda_inv_dec: Float = Field(0.01, ge=0.0)
    inverse_loss_frequency: Int = Field(1, ge=1)
    # what the inverse decoding re-encodes: the full grid, or only the Q sampled points (point-cloud encoders)
    inverse_decoding_points: one_of("all", "queries") = "all"
    lambda_latent_consistency: Float = Field(0.0, ge=0.0)  # ||step(enc(u_t)) - sg(enc(u_t+1))||^2 / norm
    latent_consistency_steps: Int = Field(1, ge=1)  # M > 1: consistency of step^q(enc(u_t)), q = 1..M
    # what the consistency error is relative to: the target latent's second moment, or the latent step itself
    latent_consistency_norm: one_of("latent", "step") = "latent"
    latent_consistency_frequency: Int = Field(1, ge=1)  # the consistency term on every n-th step only
    latent_noise: Float = Field(0.0, ge=0.0)  # noise on enc(u_t) before stepping, relative to its RMS

    @property
    def target_steps(self) -> int:
        """Frames per training target: K-step targets (B, K, *grid, C) when a multi-step term needs them."""
        return max(self.rollout_loss_steps, self.latent_consistency_steps)


OBJECTIVE_KEYS = tuple(ObjectiveSettings.model_fields)
