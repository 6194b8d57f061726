"""The Universal Physics Transformer: encode -> step -> decode -> rollout.

The training objective (forward, inverse and rollout terms, query sampling) is
in `upt_keras.objectives.upt_objective`; model sizes and presets in `upt_keras.models.presets`.
"""

import numpy as np

import keras
from keras import ops

from upt_keras.objectives import upt_objective as objective
from upt_keras.backend import concat_chunks, inference_mode
from upt_keras.layers import grid_coordinates, interpolate_on_grid
from upt_keras.models.presets import SIZE_DEFAULTS, build_parts, preset

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class UPT(keras.Model):
    """UPT neural PDE surrogate: any encoder, a latent approximator, a decoder evaluable at any point.

    `encode(u_t) -> z_t`, `step(z_t) -> z_{t+1}`, `decode(z_{t+1}, coords) -> u_{t+1}(coords)`.
    Inputs and outputs are in physical units: the model normalises with
    `field_mean` / `field_std` internally. Coordinates are normalised to
    [0, 1) per axis (grid point i of n sits at i / n). Targets and full decodes
    live on the output grid `grid_shape` (the encoder's grid for a grid encoder).
    `fit` on pairs `(u_t, u_{t+1})` minimises `upt_keras.objectives.upt_objective`; see there.

    Args:
        encoder: a `upt_keras.layers.Encoder` (`GridEncoder`, `PointCloudEncoder`).
        approximator: `Approximator`.
        decoder: `AnyPointDecoder`.
        dt: float, the time step the model advances (conditions the approximator).
        field_mean, field_std: per-channel lists, normalisation of the fields.
        decode_chunk_size: int, decode at most this many points at once.
        grid_shape: the output grid; needed when the encoder does not take a grid.
        residual: bool, decode the change instead of the field (grid encoders): a prediction from `u_t` is
            `decode(z_next) + (u_t - decode(z_t))`, the decoder's error on the start state added back, so an
            untrained model (zero-initialised approximator) is the identity and training learns how the field
            moves. Off the grid `u_t` is interpolated (`layers.interpolate_on_grid`). `decode(z)` of a latent
            alone stays the plain decoder.
        **kwargs: the training settings of `objective.TRAINING_DEFAULTS`
            (`use_inverse_losses`, `lambda_inv_enc`, `num_queries`, ...) and Keras' own.

    Example:
    >>> model = UPT.from_preset("tiny", grid_shape=(64,))
    >>> model.compile(optimizer="adam")
    >>> model.fit(u_t, u_next, epochs=1)
    >>> model.rollout(u_t[:2], num_steps=5).shape
    (2, 5, 64, 1)
    """

    def __init__(self, encoder, approximator, decoder, dt=1.0, field_mean=None, field_std=None,
                 decode_chunk_size=65536, grid_shape=None, residual=False, **kwargs):
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in objective.TRAINING_DEFAULTS}
        super().__init__(**kwargs)
        self.encoder, self.approximator, self.decoder = encoder, approximator, decoder
        if encoder.input_kind == "grid":
            grid_shape = encoder.grid_shape if grid_shape is None else grid_shape
            if tuple(grid_shape) != encoder.grid_shape:
                raise ValueError(f"grid_shape={tuple(grid_shape)} differs from the encoder's {encoder.grid_shape}")
        elif grid_shape is None:
            raise ValueError(f"an encoder of input_kind={encoder.input_kind!r} needs the output grid: UPT(..., "
                             "grid_shape=...)")
        self.grid_shape, self.num_fields = tuple(int(n) for n in grid_shape), encoder.num_channels
        self.residual = bool(residual)
        if self.residual and encoder.input_kind != "grid":
            raise ValueError(f"residual=True adds the start field to the decoded change, which needs it on the grid: "
                             f"a grid encoder, not input_kind={encoder.input_kind!r}")
        if decoder.num_fields != self.num_fields or not decoder.coord_dim == encoder.coord_dim == len(self.grid_shape):
            raise ValueError(
                f"decoder (num_fields={decoder.num_fields}, coord_dim={decoder.coord_dim}) does not match the "
                f"encoder (num_channels={self.num_fields}, coord_dim={encoder.coord_dim}) and grid {self.grid_shape}"
            )
        if approximator.latent_dim != encoder.latent_dim:
            raise ValueError(f"approximator latent_dim={approximator.latent_dim} != encoder latent_dim="
                             f"{encoder.latent_dim}")
        if int(decode_chunk_size) < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")
        self.dt, self.decode_chunk_size = float(dt), int(decode_chunk_size)
        self.field_mean = [0.0] * self.num_fields if field_mean is None else [float(v) for v in field_mean]
        self.field_std = [1.0] * self.num_fields if field_std is None else [float(v) for v in field_std]
        if len(self.field_mean) != self.num_fields or len(self.field_std) != self.num_fields:
            raise ValueError(f"field_mean and field_std need {self.num_fields} entries (one per field)")
        if min(self.field_std) <= 0:
            raise ValueError(f"field_std must be positive, got {self.field_std}")
        positions = encoder.token_positions  # for the decoder's locality bias; None without
        self._token_positions = None if positions is None else np.asarray(positions, "float32")
        self.grid_coords = grid_coordinates(self.grid_shape)  # (N, d) numpy, float32
        self.num_points = self.grid_coords.shape[0]
        objective.configure(self, **settings)
        self.build()

    @classmethod
    def from_sizes(cls, grid_shape, num_fields=1, **kwargs):
        """Builds the three parts from plain sizes (`presets.SIZE_DEFAULTS`); other keywords go to `UPT`."""
        sizes = {k: kwargs.pop(k) for k in list(kwargs) if k in SIZE_DEFAULTS}
        parts = build_parts(grid_shape, num_fields, **sizes)
        return cls(*parts, grid_shape=grid_shape, **kwargs)

    @classmethod
    def from_preset(cls, name, **kwargs):
        """A model of the named preset (`presets.PRESETS`); keywords override its sizes or go to `UPT`."""
        return cls.from_sizes(**dict(preset(name), **kwargs))

    def build(self, input_shape=None):
        if self.built:
            return
        latent_shape = (None,) + tuple(self.encoder.latent_shape)
        if not self.encoder.built:  # layers deserialised from a file come built
            if self.encoder.input_kind == "grid":
                self.encoder.build((None,) + self.grid_shape + (self.num_fields,))
            else:
                self.encoder.build((None, None, self.num_fields), (None, None, len(self.grid_shape)))
        if not self.approximator.built:
            self.approximator.build(latent_shape)
        if not self.decoder.built:
            self.decoder.build(latent_shape, (None, None, len(self.grid_shape)))
        self.built = True

    # ----------------------------------------------------------------- the model
    def field_stats(self):
        """(mean, std) per channel, float32 tensors."""
        return (ops.convert_to_tensor(np.asarray(self.field_mean, "float32")),
                ops.convert_to_tensor(np.asarray(self.field_std, "float32")))

    def encode(self, fields, positions=None):
        """Physical fields -> latent tokens (B, T, latent_dim): (B, *grid, C), or (B, N, C) at `positions` (B, N, d)."""
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
        """Latent tokens -> physical field values (B, Q, C) at `coords` ((Q, d) or (B, Q, d)).

        `coords=None` decodes the full grid and returns (B, *grid, C). Large Q is
        decoded in chunks of `chunk_size` (default `decode_chunk_size`) points.
        This is inference: no autograd graph is recorded (on torch it runs under
        `no_grad`) and the result carries no gradient on any backend, so memory
        stays bounded by one chunk however many points are asked for. Pass
        `gradients=True` to differentiate through it (each chunk's activations are
        then kept for the backward pass, as the training objective needs).
        """
        if gradients:
            return self._decode(z, coords, chunk_size)
        with inference_mode():
            return ops.stop_gradient(self._decode(z, coords, chunk_size))

    def _decode(self, z, coords=None, chunk_size=None):
        full_grid = coords is None
        coords = ops.convert_to_tensor(self.grid_coords if full_grid else coords, "float32")
        chunk = self.decode_chunk_size if chunk_size is None else int(chunk_size)
        num, positions = coords.shape[-2], self._token_positions
        if num is None or num <= chunk:
            out = self.decoder(z, coords, positions)
        else:
            out = concat_chunks(lambda start: self.decoder(z, coords[..., start:start + chunk, :], positions), num,
                                chunk)
        mean, std = self.field_stats()
        out = ops.cast(out, "float32") * std + mean
        if full_grid:
            out = ops.reshape(out, (ops.shape(out)[0],) + self.grid_shape + (self.num_fields,))
        return out

    def start_correction(self, fields, z, coords=None, idx=None):
        """`u_t - decode(z_t)` at `coords` (default: the grid): what a residual model adds to each decoded latent.

        `idx`: when `coords` are grid points, their flat grid indices (Q,); `u_t` is then read there, not
        interpolated."""
        batch = ops.shape(fields)[0]
        fields = ops.reshape(ops.cast(fields, "float32"), (batch,) + self.grid_shape + (self.num_fields,))
        if idx is not None:
            start = ops.take(ops.reshape(fields, (batch, self.num_points, self.num_fields)), idx, axis=1)
        else:
            start = fields if coords is None else interpolate_on_grid(fields, coords)
        return start - self._decode(z, coords)

    def call(self, inputs, coords=None, training=False):
        """One step: u_t -> u_{t+1} on the grid, or at `coords` ((Q, d) or (B, Q, d)).

        `inputs`: fields on the grid, or a dict `{"fields", "positions" (point-cloud
        encoders), "coords"}`. While training, the latents `{"z", "z_next"}` are
        returned instead: the objective decodes them only at the sampled points.
        """
        fields, positions = objective.input_fields(self, inputs)
        if isinstance(inputs, dict):
            coords = inputs.get("coords", coords)
        z = self.encode(fields, positions)
        z_in = z
        if training and self.latent_noise > 0:
            # Noise on the approximator's input, relative to the latent's RMS: the approximator learns to step
            # latents a little off the encoder's range, as its own outputs are in a latent rollout.
            rms = ops.sqrt(ops.mean(ops.square(ops.stop_gradient(ops.cast(z, "float32")))))
            noise = keras.random.normal(ops.shape(z), seed=self.noise_seed, dtype="float32") * rms * self.latent_noise
            z_in = z + ops.cast(noise, z.dtype)
        z_next = self.step(z_in)
        if training:
            return {"z": z, "z_next": z_next}
        out = self._decode(z_next, coords)
        return out + self.start_correction(fields, z, coords) if self.residual else out

    def rollout(self, inputs, num_steps, mode="latent", coords=None, decode_steps=None):
        """Rolls the model forward `num_steps` steps from `inputs` (what `call` takes).

        `mode="latent"`: encode once, step the approximator `num_steps` times and
        decode only the frames asked for (a residual model adds the start state's
        correction, computed once). `mode="physical"`: decode on the full grid and
        re-encode after every step. `decode_steps` (1-based step numbers,
        default all) selects the returned frames; `coords` decodes those frames at
        arbitrary points instead of the grid.
        Returns (B, K, *grid, C), or (B, K, Q, C) with `coords`, as a numpy array.
        """
        if mode not in ("latent", "physical"):
            raise ValueError(f"rollout mode must be 'latent' or 'physical', got {mode!r}")
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        wanted = set(range(1, num_steps + 1) if decode_steps is None else decode_steps)
        if not wanted or min(wanted) < 1 or max(wanted) > num_steps:
            raise ValueError(f"decode_steps must lie in [1, {num_steps}], got {sorted(wanted)}")
        fields, positions = objective.input_fields(self, inputs)
        frames = []
        with inference_mode():  # no autograd graph across the steps
            z = self.encode(ops.convert_to_tensor(fields, "float32"), positions)
            base = self.start_correction(fields, z, coords) if self.residual and mode == "latent" else 0.0
            for k in range(1, num_steps + 1):
                z_next = self.step(z)
                if mode == "physical":
                    new = self._decode(z_next) + (self.start_correction(fields, z) if self.residual else 0.0)
                    if k in wanted:
                        frames.append(new if coords is None else self._decode(z_next, coords) + (
                            self.start_correction(fields, z, coords) if self.residual else 0.0))
                    fields, z_next = new, self.encode_grid(new)
                elif k in wanted:
                    frames.append(self._decode(z_next, coords) + base)
                z = z_next
        return np.stack([ops.convert_to_numpy(f) for f in frames], axis=1)

    # ----------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return objective.compute_loss(self, x, y, y_pred, training=training)

    def inverse_losses(self, inputs):
        """Inverse-encoding and inverse-decoding MSE on the full grid, as floats (`objective.inverse_losses`)."""
        return objective.inverse_losses(self, inputs)

    @property
    def metrics(self):
        return super().metrics + objective.trackers(self)

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update({name: keras.saving.serialize_keras_object(getattr(self, name))
                       for name in ("encoder", "approximator", "decoder")})
        config.update(dt=self.dt, field_mean=list(self.field_mean), field_std=list(self.field_std),
                      decode_chunk_size=self.decode_chunk_size, grid_shape=list(self.grid_shape), residual=self.residual,
                      **objective.settings(self))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "approximator", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
