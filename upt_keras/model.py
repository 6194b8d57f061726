"""The Universal Physics Transformer: encode -> step -> decode, and its training losses."""

import numpy as np

import keras
from keras import ops

from upt_keras.backend import inference_mode
from upt_keras.distribute import scale_loss_for_replicas
from upt_keras.layers import AnyPointDecoder, Approximator, GridEncoder, grid_coordinates
from upt_keras.losses import field_mse, latent_mse
from upt_keras.sampling import QuerySampler

PACKAGE = "upt_keras"


@keras.saving.register_keras_serializable(package=PACKAGE)
class UPT(keras.Model):
    """UPT neural PDE surrogate on a regular 1D/2D grid, decodable at any point.

    `encode(u_t) -> z_t`, `step(z_t) -> z_{t+1}`, `decode(z_{t+1}, coords) -> u_{t+1}(coords)`.
    Inputs and outputs are in physical units: the model normalises with
    `field_mean` / `field_std` internally. Coordinates are normalised to
    [0, 1) per axis (grid point i of n sits at i / n).

    Training (`fit` on pairs `(u_t, u_{t+1})`, both (B, *grid, C)) minimises
    - forward: MSE(decode(step(encode(u_t)), X_q), u_{t+1}(X_q)) on Q sampled points,
    plus, on every `inverse_loss_frequency`-th step when `use_inverse_losses`:
    - inverse encoding x `inv_enc_weight`: MSE(decode(encode(u_t), X_q), u_t(X_q)),
    - inverse decoding x `inv_dec_weight`: MSE(encode(decode(z_{t+1}, X)), stop_gradient(z_{t+1})).
    With `rollout_loss_steps` K > 1 the targets are the next K frames (B, K, *grid, C)
    and the forward term is the mean over k = 1..K of MSE(decode(step^k(z_t), X_q),
    u_{t+k}(X_q)): a latent rollout loss, backpropagated through all K steps, that
    teaches the approximator to step on its own outputs.
    On an inverse step the next-step latent is decoded once on the full grid and
    serves both the forward and the inverse-decoding term. On other steps (and
    while both weights are 0) the inverse terms are not computed at all.
    Evaluation reports the forward loss on all N points.

    Args:
        encoder: `GridEncoder`.
        approximator: `Approximator`.
        decoder: `AnyPointDecoder`.
        dt: float, the time step the model advances (conditions the approximator).
        field_mean, field_std: per-channel lists, normalisation of the fields.
        use_inverse_losses: bool.
        lambda_inv_enc, lambda_inv_dec: float, base inverse-loss weights (the
            effective weights start at these; `InverseLossCurriculum` schedules them).
        inverse_loss_frequency: int k >= 1, inverse terms on every k-th step.
        num_queries: int or None, Q sampled points per training step (None: all).
        query_strategy: `"uniform"` or `"stratified"`.
        decode_chunk_size: int, decode at most this many points at once.
        seed: int or None, seeds query sampling.
        forward_loss_weight: float, weight of the forward term (0 trains a pure
            auto-encoder through the inverse terms, e.g. for pre-training).
        rollout_loss_steps: int K >= 1, latent steps of the forward term; K > 1
            needs training targets of shape (B, K, *grid, C).
        lambda_latent_consistency: float >= 0, weight of the latent-consistency
            term `||step^q(encode(u_t)) - stop_gradient(encode(u_t+q))||^2`, divided
            by the target's second moment `mean(encode(u_t+q)^2)` (see
            `_consistency_term`).
        latent_consistency_steps: int M >= 1, latent steps q = 1..M of that term;
            M > 1 needs targets (B, M, *grid, C) (K-step targets serve both terms:
            the model expects max(K, M) frames).
        latent_noise: float >= 0, while training, Gaussian noise of this size
            relative to the latent's RMS is added to `encode(u_t)` before the
            approximator steps it (0: off).

    Example:
    >>> model = UPT.from_sizes(grid_shape=(64,), num_fields=1, latent_dim=32)
    >>> model.compile(optimizer="adam")
    >>> model.fit(u_t, u_next, epochs=1)
    >>> model.rollout(u_t[:2], num_steps=5).shape
    (2, 5, 64, 1)
    """

    def __init__(
        self,
        encoder,
        approximator,
        decoder,
        dt=1.0,
        field_mean=None,
        field_std=None,
        use_inverse_losses=False,
        lambda_inv_enc=0.01,
        lambda_inv_dec=0.01,
        inverse_loss_frequency=1,
        num_queries=None,
        query_strategy="uniform",
        decode_chunk_size=65536,
        seed=None,
        forward_loss_weight=1.0,
        rollout_loss_steps=1,
        lambda_latent_consistency=0.0,
        latent_consistency_steps=1,
        latent_noise=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.encoder, self.approximator, self.decoder = encoder, approximator, decoder
        self.grid_shape, self.num_fields = encoder.grid_shape, encoder.num_channels
        if decoder.num_fields != self.num_fields or decoder.coord_dim != len(self.grid_shape):
            raise ValueError(
                f"decoder (num_fields={decoder.num_fields}, coord_dim={decoder.coord_dim}) does not match the "
                f"encoder (num_channels={self.num_fields}, grid_shape={self.grid_shape})"
            )
        if approximator.latent_dim != encoder.latent_dim:
            raise ValueError(
                f"approximator latent_dim={approximator.latent_dim} != encoder latent_dim={encoder.latent_dim}"
            )
        for name, value in (("lambda_inv_enc", lambda_inv_enc), ("lambda_inv_dec", lambda_inv_dec)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if int(inverse_loss_frequency) < 1:
            raise ValueError(f"inverse_loss_frequency must be >= 1, got {inverse_loss_frequency}")
        if int(decode_chunk_size) < 1:
            raise ValueError(f"decode_chunk_size must be >= 1, got {decode_chunk_size}")
        self.dt = float(dt)
        self.field_mean = [0.0] * self.num_fields if field_mean is None else [float(v) for v in field_mean]
        self.field_std = [1.0] * self.num_fields if field_std is None else [float(v) for v in field_std]
        if len(self.field_mean) != self.num_fields or len(self.field_std) != self.num_fields:
            raise ValueError(f"field_mean and field_std need {self.num_fields} entries (one per field)")
        if min(self.field_std) <= 0:
            raise ValueError(f"field_std must be positive, got {self.field_std}")
        self.use_inverse_losses = bool(use_inverse_losses)
        self.lambda_inv_enc, self.lambda_inv_dec = float(lambda_inv_enc), float(lambda_inv_dec)
        self.inverse_loss_frequency = int(inverse_loss_frequency)
        self.decode_chunk_size = int(decode_chunk_size)
        if forward_loss_weight < 0:
            raise ValueError(f"forward_loss_weight must be >= 0, got {forward_loss_weight}")
        self.forward_loss_weight = float(forward_loss_weight)
        if int(rollout_loss_steps) < 1:
            raise ValueError(f"rollout_loss_steps must be >= 1, got {rollout_loss_steps}")
        self.rollout_loss_steps = int(rollout_loss_steps)
        if lambda_latent_consistency < 0:
            raise ValueError(f"lambda_latent_consistency must be >= 0, got {lambda_latent_consistency}")
        self.lambda_latent_consistency = float(lambda_latent_consistency)
        if int(latent_consistency_steps) < 1:
            raise ValueError(f"latent_consistency_steps must be >= 1, got {latent_consistency_steps}")
        self.latent_consistency_steps = int(latent_consistency_steps)
        if latent_noise < 0:
            raise ValueError(f"latent_noise must be >= 0, got {latent_noise}")
        self.latent_noise = float(latent_noise)
        if self.latent_noise > 0:
            self.noise_seed = keras.random.SeedGenerator(seed, name="latent_noise_seed")
        # Frames per training target: K-step targets (B, K, *grid, C) when either multi-step term needs them.
        self.target_steps = max(self.rollout_loss_steps, self.latent_consistency_steps)
        # Token positions for the decoder's locality bias (grid encoders with average pooling have them).
        positions = getattr(encoder, "token_positions", None)
        self._token_positions = None if positions is None else np.asarray(positions, "float32")
        self.query_sampler = QuerySampler(self.grid_shape, num_queries, query_strategy, seed=seed, name="queries")
        self.num_queries, self.query_strategy, self.seed = num_queries, query_strategy, seed
        self.grid_coords = grid_coordinates(self.grid_shape)  # (N, d) numpy, float32
        self.num_points = self.grid_coords.shape[0]

        # Effective inverse-loss weights and an own step counter: model-owned
        # variables, so callbacks and compiled steps see the same values.
        self.inv_enc_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.lambda_inv_enc), trainable=False,
            name="inv_enc_weight", dtype="float32",
        )
        self.inv_dec_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.lambda_inv_dec), trainable=False,
            name="inv_dec_weight", dtype="float32",
        )
        self.train_step_counter = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="train_step_counter", dtype="int32"
        )
        self.forward_loss_tracker = keras.metrics.Mean(name="forward_loss")
        if self.lambda_latent_consistency > 0:
            self.consistency_tracker = keras.metrics.Mean(name="consistency_loss")
        if self.rollout_loss_steps > 1:  # mean MSE of the latent steps 2..K
            self.rollout_loss_tracker = keras.metrics.Mean(name="rollout_loss")
        if self.use_inverse_losses:
            self.inv_enc_tracker = keras.metrics.Mean(name="inv_enc_loss")
            self.inv_dec_tracker = keras.metrics.Mean(name="inv_dec_loss")
            self.inv_enc_weight_tracker = keras.metrics.Mean(name="lambda_inv_enc")
            self.inv_dec_weight_tracker = keras.metrics.Mean(name="lambda_inv_dec")
        self.build((None,) + self.grid_shape + (self.num_fields,))

    @classmethod
    def from_sizes(
        cls,
        grid_shape,
        num_fields=1,
        patch_size=4,
        encoder_dim=64,
        encoder_depth=1,
        encoder_heads=4,
        num_latent_tokens=32,
        latent_dim=64,
        pooling="perceiver",
        approximator_width=128,
        approximator_depth=4,
        approximator_heads=4,
        mlp_ratio=4,
        decoder_width=128,
        decoder_depth=2,
        decoder_heads=4,
        decoder_mlp_dim=256,
        frequencies=(1, 2, 4, 8),
        decoder_locality=False,
        approximator_zero_init=False,
        **kwargs,
    ):
        """Builds the three parts from plain sizes (the `model:` section of a config)."""
        encoder = GridEncoder(
            grid_shape, num_fields, patch_size=patch_size, dim=encoder_dim, depth=encoder_depth,
            num_heads=encoder_heads, mlp_ratio=mlp_ratio, num_latent_tokens=num_latent_tokens,
            latent_dim=latent_dim, pooling=pooling, frequencies=frequencies, name="encoder",
        )
        approximator = Approximator(
            latent_dim, width=approximator_width, depth=approximator_depth, num_heads=approximator_heads,
            mlp_ratio=mlp_ratio, zero_init=approximator_zero_init, name="approximator",
        )
        decoder = AnyPointDecoder(
            num_fields, len(grid_shape), width=decoder_width, depth=decoder_depth, num_heads=decoder_heads,
            mlp_dim=decoder_mlp_dim, frequencies=frequencies, locality=decoder_locality, name="decoder",
        )
        return cls(encoder, approximator, decoder, **kwargs)

    def build(self, input_shape=None):
        if self.built:
            return
        # Every layer builds its weights from shapes alone: nothing is computed.
        fields_shape = (None,) + self.grid_shape + (self.num_fields,)
        latent_shape = (None, self.encoder.num_latent_tokens, self.encoder.latent_dim)
        for layer, shapes in ((self.encoder, (fields_shape,)), (self.approximator, (latent_shape,)),
                              (self.decoder, (latent_shape, (None, None, len(self.grid_shape))))):
            if not layer.built:  # layers deserialised from a file come built
                layer.build(*shapes)
        self.built = True

    # ----------------------------------------------------------------- the model
    def _stats(self):
        mean = ops.convert_to_tensor(np.asarray(self.field_mean, "float32"))
        std = ops.convert_to_tensor(np.asarray(self.field_std, "float32"))
        return mean, std

    def encode(self, fields):
        """Physical fields (B, *grid, C) -> latent tokens (B, T, latent_dim)."""
        mean, std = self._stats()
        return self.encoder((ops.cast(fields, "float32") - mean) / std)

    def step(self, z, dt=None):
        """Advances latent tokens by one time step `dt` (default: the model's dt; scalar or (B,))."""
        return self.approximator(z, dt=self.dt if dt is None else dt)

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
        num = coords.shape[-2]
        positions = self._token_positions
        if num is None or num <= chunk:
            out = self.decoder(z, coords, positions)
        else:
            parts = [self.decoder(z, coords[..., start:start + chunk, :], positions)
                     for start in range(0, num, chunk)]
            out = ops.concatenate(parts, axis=1)
        mean, std = self._stats()
        out = ops.cast(out, "float32") * std + mean
        if full_grid:
            out = ops.reshape(out, (ops.shape(out)[0],) + self.grid_shape + (self.num_fields,))
        return out

    def call(self, inputs, coords=None, training=False):
        """One step: u_t (B, *grid, C) -> u_{t+1} on the grid, or at `coords` ((Q, d) or (B, Q, d)).

        `inputs` may also be a dict `{"fields": ..., "coords": ...}`. While
        training, the latents `{"z", "z_next"}` are returned instead: decoding
        then happens in `compute_loss`, only at the sampled query points.
        """
        if isinstance(inputs, dict):
            coords = inputs.get("coords", coords)
            inputs = inputs["fields"]
        z = self.encode(inputs)
        if training and self.latent_noise > 0:
            # Noise on the approximator's input, relative to the latent's RMS: the approximator learns to step
            # latents that are a little off the encoder's range, as its own outputs are in a latent rollout.
            rms = ops.sqrt(ops.mean(ops.square(ops.stop_gradient(ops.cast(z, "float32")))))
            noise = keras.random.normal(ops.shape(z), seed=self.noise_seed, dtype="float32") * rms * self.latent_noise
            z_next = self.step(z + ops.cast(noise, z.dtype))
        else:
            z_next = self.step(z)
        if training:
            return {"z": z, "z_next": z_next}
        return self._decode(z_next, coords)

    def rollout(self, fields0, num_steps, mode="latent", coords=None, decode_steps=None):
        """Rolls the model forward `num_steps` steps from `fields0` (B, *grid, C).

        `mode="latent"`: encode once, step the approximator `num_steps` times and
        decode only the frames asked for. `mode="physical"`: decode on the full
        grid and re-encode after every step. `decode_steps` (1-based step numbers,
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
        frames = []
        with inference_mode():  # no autograd graph across the steps
            z = self.encode(ops.convert_to_tensor(fields0, "float32"))
            for k in range(1, num_steps + 1):
                z = self.step(z)
                if mode == "physical":
                    fields = self.decode(z)
                    if k in wanted:
                        frames.append(fields if coords is None else self.decode(z, coords))
                    z = self.encode(fields)
                elif k in wanted:
                    frames.append(self.decode(z, coords))
        return np.stack([ops.convert_to_numpy(f) for f in frames], axis=1)

    # ----------------------------------------------------------------- training
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        fields = x["fields"] if isinstance(x, dict) else x
        _, std = self._stats()
        y, later = self._split_targets(y)
        if not training:  # evaluation: y_pred is the full-grid one-step prediction
            forward = field_mse(y_pred, y, std)
            self.forward_loss_tracker.update_state(forward)
            if self.use_inverse_losses:  # reported on the full grid, not added to the loss
                z = self.encode(fields)
                self.inv_enc_tracker.update_state(field_mse(self._decode(z), fields, std))
                self.inv_dec_tracker.update_state(latent_mse(self.encode(y_pred), self.step(z)))
                self.inv_enc_weight_tracker.update_state(self.inv_enc_weight)
                self.inv_dec_weight_tracker.update_state(self.inv_dec_weight)
            if later and self.rollout_loss_steps > 1:  # the latent rollout error of steps 2..K, on the full grid
                z_next = self.step(self.encode(fields))
                self._rollout_term(forward, z_next, later, None, ops.convert_to_tensor(self.grid_coords), std)
            return scale_loss_for_replicas(forward)

        z, z_next = y_pred["z"], y_pred["z_next"]
        batch = ops.shape(fields)[0]
        u_t = ops.reshape(fields, (batch, self.num_points, self.num_fields))
        u_next = ops.reshape(y, (batch, self.num_points, self.num_fields))
        coords = ops.convert_to_tensor(self.grid_coords)
        idx = self.query_sampler.sample()  # (Q,) or None = every point
        if idx is not None:
            coords_q, u_t_q, u_next_q = (ops.take(coords, idx, axis=0), ops.take(u_t, idx, axis=1),
                                         ops.take(u_next, idx, axis=1))
        else:
            coords_q, u_t_q, u_next_q = coords, u_t, u_next

        def forward_only():
            forward = field_mse(self._decode(z_next, coords_q), u_next_q, std)
            return forward, ops.zeros((), "float32"), ops.zeros((), "float32")

        def with_inverse():
            # Decode the next latent once on the full grid: it serves the forward
            # loss (at the sampled points) and the inverse decoding (re-encoded).
            u_next_pred = self._decode(z_next, coords)  # (B, N, C), physical
            pred_q = u_next_pred if idx is None else ops.take(u_next_pred, idx, axis=1)
            forward = field_mse(pred_q, u_next_q, std)
            inv_enc = field_mse(self._decode(z, coords_q), u_t_q, std)
            reencoded = self.encode(ops.reshape(u_next_pred, (batch,) + self.grid_shape + (self.num_fields,)))
            inv_dec = latent_mse(reencoded, ops.stop_gradient(z_next))
            return forward, inv_enc, inv_dec

        if not self.use_inverse_losses:
            forward = forward_only()[0]
            total = self.forward_loss_weight * self._rollout_term(forward, z_next, later, idx, coords_q, std)
        else:
            w_enc, w_dec = self.inv_enc_weight, self.inv_dec_weight
            on = ops.logical_and(
                ops.equal(ops.mod(self.train_step_counter, self.inverse_loss_frequency), 0),
                ops.greater(w_enc + w_dec, 0.0),
            )
            forward, inv_enc, inv_dec = ops.cond(on, with_inverse, forward_only)
            fwd = self._rollout_term(forward, z_next, later, idx, coords_q, std)
            total = self.forward_loss_weight * fwd + w_enc * inv_enc + w_dec * inv_dec
            on_weight = ops.cast(on, "float32")
            self.inv_enc_tracker.update_state(inv_enc, sample_weight=on_weight)
            self.inv_dec_tracker.update_state(inv_dec, sample_weight=on_weight)
            self.inv_enc_weight_tracker.update_state(w_enc)
            self.inv_dec_weight_tracker.update_state(w_dec)
        if self.lambda_latent_consistency > 0:
            consistency = self._consistency_term(z, z_next, y, later)
            self.consistency_tracker.update_state(consistency)
            total = total + self.lambda_latent_consistency * consistency
        self.train_step_counter.assign_add(1)
        self.forward_loss_tracker.update_state(forward)
        return scale_loss_for_replicas(total)  # per-replica mean -> share of the global loss under tf.distribute

    def _consistency_term(self, z, z_next, target, later=()):
        """Latent consistency: mean over q = 1..M of ||step^q(z_t) - sg(z*_t+q)||^2 / ||sg(z*_t+q)||^2.

        `z*_t+q = encode(u_t+q)`. The approximator's output is pulled onto the encoding of the true next frame(s),
        so a latent rollout stays where the encoder would put the physical one; with M = `latent_consistency_steps`
        > 1 it also learns to step on its own outputs, at the cost of M approximator steps and M encodings (no
        decoding). The targets are constants (no gradient). The error is relative to the target's second moment,
        so the encoder cannot shrink the term by shrinking its latents. The gradients reach the approximator and,
        through `z_t`, the encoder.
        """

        def one(zq, frame):
            z_target = ops.stop_gradient(ops.cast(self.encode(frame), "float32"))
            err = ops.mean(ops.square(ops.cast(zq, "float32") - z_target))
            return err / (ops.mean(ops.square(z_target)) + 1e-12)

        terms, zq = [one(z_next, target)], z_next
        for frame in list(later)[: self.latent_consistency_steps - 1]:
            zq = self.step(zq)
            terms.append(one(zq, frame))
        return terms[0] if len(terms) == 1 else ops.mean(ops.stack(terms))

    def _split_targets(self, y):
        """(first-step target, [targets of steps 2..K]) from one-step (B, *grid, C) or K-step (B, K, *grid, C) targets."""
        grid_rank = len(self.grid_shape)
        # TensorShape.rank is None after a TensorFlow retrace on a new target shape.
        rank = y.shape.rank if hasattr(y.shape, "rank") else len(y.shape)
        if rank is None:
            if self.target_steps == 1:
                return y, []
            raise ValueError(
                "targets of unknown rank: TensorFlow retraced the compiled step for targets of another shape; with "
                "K-step targets keep one target shape per compiled model (or call compile() again)"
            )
        if rank == grid_rank + 2:
            return y, []
        if rank != grid_rank + 3 or y.shape[1] != self.target_steps:
            raise ValueError(
                f"targets of shape {tuple(y.shape)} do not fit the model: expected (B, *{self.grid_shape}, "
                f"{self.num_fields}) or, with rollout_loss_steps={self.rollout_loss_steps} and "
                f"latent_consistency_steps={self.latent_consistency_steps}, "
                f"(B, {self.target_steps}, *{self.grid_shape}, {self.num_fields})"
            )
        return y[:, 0], [y[:, k] for k in range(1, self.target_steps)]

    def _rollout_term(self, forward, z_next, later, idx, coords_q, std):
        """The forward term: the one-step MSE, averaged with the MSE of latent steps 2..K when targets are K-step."""
        later = list(later)[: self.rollout_loss_steps - 1]
        if not later:
            return forward
        z, extra = z_next, []
        for target in later:
            z = self.step(z)
            target = ops.reshape(target, (ops.shape(target)[0], self.num_points, self.num_fields))
            if idx is not None:
                target = ops.take(target, idx, axis=1)
            extra.append(field_mse(self._decode(z, coords_q), target, std))
        later_mean = ops.mean(ops.stack(extra))
        self.rollout_loss_tracker.update_state(later_mean)
        return (forward + later_mean * len(later)) / (len(later) + 1)

    def inverse_losses(self, fields, next_fields=None):
        """Inverse-encoding and inverse-decoding MSE on the full grid (for evaluation).

        Returns a dict of floats: `inv_enc_loss` (how well the decoder reconstructs
        `fields` from its own latent) and `inv_dec_loss` (how well the encoder
        recovers the next-step latent from its decoded field).
        """
        _, std = self._stats()
        with inference_mode():
            fields = ops.convert_to_tensor(fields, "float32")
            z = self.encode(fields)
            z_next = self.step(z)
            inv_enc = field_mse(self.decode(z), fields, std)
            inv_dec = latent_mse(self.encode(self.decode(z_next)), z_next)
        return {"inv_enc_loss": float(ops.convert_to_numpy(inv_enc)),
                "inv_dec_loss": float(ops.convert_to_numpy(inv_dec))}

    @property
    def metrics(self):
        trackers = [self.forward_loss_tracker]
        if self.lambda_latent_consistency > 0:
            trackers.append(self.consistency_tracker)
        if self.rollout_loss_steps > 1:
            trackers.append(self.rollout_loss_tracker)
        if self.use_inverse_losses:
            trackers += [self.inv_enc_tracker, self.inv_dec_tracker,
                         self.inv_enc_weight_tracker, self.inv_dec_weight_tracker]
        return super().metrics + trackers

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "approximator": keras.saving.serialize_keras_object(self.approximator),
                "decoder": keras.saving.serialize_keras_object(self.decoder),
                "dt": self.dt,
                "field_mean": list(self.field_mean),
                "field_std": list(self.field_std),
                "use_inverse_losses": self.use_inverse_losses,
                "lambda_inv_enc": self.lambda_inv_enc,
                "lambda_inv_dec": self.lambda_inv_dec,
                "inverse_loss_frequency": self.inverse_loss_frequency,
                "num_queries": self.num_queries,
                "query_strategy": self.query_strategy,
                "decode_chunk_size": self.decode_chunk_size,
                "seed": self.seed,
                "forward_loss_weight": self.forward_loss_weight,
                "rollout_loss_steps": self.rollout_loss_steps,
                "lambda_latent_consistency": self.lambda_latent_consistency,
                "latent_consistency_steps": self.latent_consistency_steps,
                "latent_noise": self.latent_noise,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "approximator", "decoder"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
