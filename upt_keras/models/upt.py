"""The Universal Physics Transformer: encode -> step -> decode, and rollouts of it.

What training minimises is `upt_keras.objectives.UPTObjective` (`UPT(..., objective=...)`); sizes and presets are in
`upt_keras.models.presets`.
"""

import numpy as np

import keras
from keras import ops

from upt_keras.backend import concat_chunks, inference_mode
from upt_keras.layers import grid_coordinates
from upt_keras.layers.anypoint_decoder import output_coords
from upt_keras.layers.encoder import split_inputs
from upt_keras.models.fields import fields_at
from upt_keras.models.presets import SIZE_DEFAULTS, build_parts, build_unbuilt, check_parts, normalisation, preset
from upt_keras.models.rollout import rollout
from upt_keras.objectives.upt_objective import UPTObjective


@keras.saving.register_keras_serializable(package="upt_keras")
class UPT(keras.Model):
    """UPT neural PDE surrogate: `encode(u_t) -> z_t`, `step(z_t) -> z_{t+1}`, `decode(z_{t+1}, coords)`.

    Fields are in physical units (normalised inside with `field_mean` / `field_std`), coordinates in [0, 1) per axis
    (grid point i of n at i / n); full decodes live on the output grid `grid_shape`.

    Args:
        encoder, approximator, decoder: an `Encoder` (`GridEncoder`, `PointCloudEncoder`), `Approximator`,
            `AnyPointDecoder`.
        dt: float, the time step the model advances.  field_mean, field_std: per-channel lists.
        decode_chunk_size: int, decode at most this many points at once.
        grid_shape: the output grid; needed when the encoder does not take a grid.
        residual: bool, predict `decode(z_next) + (u_t - decode(z_t))`: an untrained model (zero-initialised
            approximator) is the identity. Off the grid `u_t` is interpolated; from scattered points it is read
            elsewhere by quadratic moving least squares over its `residual_neighbours` nearest points.
        objective: the `UPTObjective` `fit` minimises (default: the one-step forward MSE alone).

    Example:
    >>> model = UPT.from_preset("tiny", objective=UPTObjective(use_inverse_losses=True))
    >>> model.compile(optimizer="adam")
    >>> model.fit(u_t, u_next, epochs=1)
    >>> model.rollout(u_t[:2], num_steps=5).shape
    (2, 5, 32, 1)
    """

    def __init__(self, encoder, approximator, decoder, dt=1.0, field_mean=None, field_std=None,
                 decode_chunk_size=65536, grid_shape=None, residual=False, residual_neighbours=12, objective=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.approximator, self.decoder = encoder, approximator, decoder
        self.grid_shape = check_parts(encoder, approximator, decoder, grid_shape)
        self.num_fields, self.residual = encoder.num_channels, bool(residual)
        for key, value in (("decode_chunk_size", decode_chunk_size), ("residual_neighbours", residual_neighbours)):
            if int(value) < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self.dt, self.decode_chunk_size = float(dt), int(decode_chunk_size)
        self.residual_neighbours = int(residual_neighbours)
        self.field_mean, self.field_std = normalisation(field_mean, field_std, self.num_fields)
        positions = encoder.token_positions  # for the locality biases; None without
        self._token_positions = None if positions is None else np.asarray(positions, "float32")
        self.grid_coords = grid_coordinates(self.grid_shape)  # (N, d) numpy, float32
        self.num_points = self.grid_coords.shape[0]
        self.objective = UPTObjective() if objective is None else objective
        self.objective.attach(self)
        self.build()

    @classmethod
    def from_sizes(cls, grid_shape, num_fields=1, **kwargs):
        """Builds the three parts from plain sizes (`presets.ModelSizes`); other keywords go to `UPT`."""
        sizes = {k: kwargs.pop(k) for k in list(kwargs) if k in SIZE_DEFAULTS}
        return cls(*build_parts(grid_shape, num_fields, **sizes), grid_shape=grid_shape, **kwargs)

    @classmethod
    def from_preset(cls, name, **kwargs):
        """A model of the named preset (`presets.PRESETS`); keywords override its sizes or go to `UPT`."""
        return cls.from_sizes(**dict(preset(name), **kwargs))

    def build(self, input_shape=None):
        if not self.built:
            build_unbuilt(self.encoder, self.approximator, self.decoder, self.grid_shape, self.num_fields)
            self.built = True

    # ------------------------------------------------------------------------------------------------ the method
    def field_stats(self):
        """(mean, std) per channel, float32 tensors."""
        return tuple(ops.convert_to_tensor(np.asarray(v, "float32")) for v in (self.field_mean, self.field_std))

    def encode(self, fields, positions=None):
        """Physical fields -> latent tokens (B, T, latent_dim): (B, *grid, C), or (B, N, C) at `positions` (B, N, d).
        A point-cloud encoder given fields on the grid reads them at the grid points."""
        if self.encoder.input_kind != "grid" and positions is None:
            return self.encode_grid(fields)
        mean, std = self.field_stats()
        normalised = (ops.cast(fields, "float32") - mean) / std
        if self.encoder.input_kind == "grid":
            if positions is not None:
                raise ValueError("a grid encoder takes fields on its grid, not positions")
            return self.encoder(normalised)
        return self.encoder(normalised, ops.cast(positions, "float32"))

    def encode_grid(self, fields):
        """Encodes fields on the output grid, (B, *grid, C) or (B, N, C), whatever the encoder takes."""
        batch = ops.shape(fields)[0]
        if self.encoder.input_kind == "grid":
            return self.encode(ops.reshape(fields, (batch,) + self.grid_shape + (self.num_fields,)))
        coords = ops.convert_to_tensor(self.grid_coords)
        positions = ops.broadcast_to(coords[None], (batch,) + tuple(coords.shape))
        return self.encode(ops.reshape(fields, (batch, self.num_points, self.num_fields)), positions)

    def step(self, z, dt=None):
        """Advances latent tokens by one time step `dt` (default: the model's dt; scalar or (B,))."""
        return self.approximator(z, dt=self.dt if dt is None else dt, positions=self._token_positions)

    def decode(self, z, coords=None, chunk_size=None, gradients=False):
        """Latent tokens -> physical field values (B, Q, C) at `coords` ((Q, d) or (B, Q, d)), or (B, *grid, C) on the
        full grid, in chunks of `chunk_size` points. Without `gradients` (inference) no autograd graph is kept, so
        memory stays bounded by one chunk; the training objective asks for `gradients=True`."""
        if not gradients:
            with inference_mode():
                return ops.stop_gradient(self.decode(z, coords, chunk_size, gradients=True))
        full_grid = coords is None
        coords = ops.convert_to_tensor(self.grid_coords if full_grid else coords, "float32")
        chunk, num = self.decode_chunk_size if chunk_size is None else int(chunk_size), coords.shape[-2]

        def decode_chunk(start):
            return self.decoder(z, coords[..., start:start + chunk, :], self._token_positions)

        out = decode_chunk(0) if num is None or num <= chunk else concat_chunks(decode_chunk, num, chunk)
        mean, std = self.field_stats()
        out = ops.cast(out, "float32") * std + mean
        return ops.reshape(out, (ops.shape(out)[0],) + self.grid_shape + (self.num_fields,)) if full_grid else out

    def start_correction(self, fields, z, coords=None, idx=None, flat=False, positions=None):
        """`u_t - decode(z_t)` at `coords` (default: the grid), with gradients: what a residual model adds to each
        decoded latent. `u_t` is read there by `fields_at` (`idx`: the flat grid indices of `coords`; `positions`:
        where `fields` are given, for point clouds). `flat`: (B, N, C) instead of (B, *grid, C) on the full grid."""
        start = fields_at(fields, self.grid_shape, coords, idx, positions, self.residual_neighbours,
                          getattr(self.encoder, "periodic", False))
        out = start - self.decode(z, coords, gradients=True)
        flat = flat and coords is None
        return ops.reshape(out, (ops.shape(out)[0], self.num_points, self.num_fields)) if flat else out

    def predict_from_latents(self, fields, z, z_next, coords=None, gradients=False, positions=None):
        """u_{t+1} at `coords` (default: the grid) from `z_t = encode(u_t)` (of `fields`, at `positions` when
        given) and the stepped `z_next`."""
        out = self.decode(z_next, coords, gradients=gradients)
        return out + self.start_correction(fields, z, coords, positions=positions) if self.residual else out

    def call(self, inputs, coords=None, training=False):
        """One step: u_t -> u_{t+1} on the grid, or at `coords` ((Q, d) or (B, Q, d)).

        `inputs`: fields on the grid, or a dict `{"fields", "positions" (point clouds), "coords"}`. While training
        the output is the latent step `{"z": z_t, "z_next": z_t+1}` for `compute_loss`, whose objective decodes at
        the points it samples (why: docs/architecture.md).
        """
        fields, positions = split_inputs(inputs)
        coords = output_coords(inputs, coords)
        z = self.encode(fields, positions)
        z_next = self.step(z)
        if training:
            return {"z": z, "z_next": z_next}
        return self.predict_from_latents(fields, z, z_next, coords, positions=positions)

    def rollout(self, inputs, num_steps, mode="latent", coords=None, decode_steps=None):
        """`num_steps` steps from `inputs` (what `call` takes): a numpy array (B, K, *grid, C), or (B, K, Q, C) at
        `coords`. `mode="latent"`: encode once, step `num_steps` times, decode only the `decode_steps` (1-based,
        default all); `"physical"`: decode the full grid and re-encode after every step (`models.rollout`)."""
        return rollout(self, inputs, num_steps, mode, coords, decode_steps)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return self.objective(self, x, y, y_pred, training=training)

    # ------------------------------------------------------------------------------------------------ config
    def load_own_variables(self, store):  # a file from before the objective was an object holds its variables here
        if not self.objective.load_legacy_variables(store, self._trainable_variables + self._non_trainable_variables):
            super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config.update({name: keras.saving.serialize_keras_object(getattr(self, name))
                       for name in ("encoder", "approximator", "decoder", "objective")})
        config.update(dt=self.dt, field_mean=list(self.field_mean), field_std=list(self.field_std),
                      decode_chunk_size=self.decode_chunk_size, grid_shape=list(self.grid_shape),
                      residual=self.residual, residual_neighbours=self.residual_neighbours)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "approximator", "decoder", "objective"):
            if key in config:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**UPTObjective.from_legacy_model_config(config))
