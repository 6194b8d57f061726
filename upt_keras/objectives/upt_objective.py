"""The UPT training objective: what `UPT.compute_loss` minimises, as an object of its own.

`UPTObjective` holds the settings (`objectives.settings.ObjectiveSettings`), the query sampler, the loss weights a
curriculum may change (model-tracked variables), its own step counter and the trackers. The model holds none of
them: `UPT(..., objective=UPTObjective(...))`.

Training pairs are `(u_t, u_{t+1})`. `u_t` is what the encoder takes: fields on the grid (B, *grid, C), or
`{"fields": (B, N, C), "positions": (B, N, d)}` for a point-cloud encoder. Targets are on the model's output grid:
(B, *grid, C), or (B, K, *grid, C) for the multi-step terms (`target_steps` frames); or, when the inputs also hold
`"coords"` (B, M, d), at those points: (B, M, C) or (B, K, M, C) (scattered data: the queries are Q of the M points,
and every term that encodes a target frame encodes it at those points).

A training step reads the model's latent step (`UPT.call(training=True)`: `z_t = encode(u_t)`, `z_{t+1} =
step(z_t)`) and draws Q query points (`TrainingPass`); then each term is one function of that pass, weighted and
summed (`terms`):
- forward x `forward_loss_weight`: the error of `predict(z_{t+1})` at the Q points, MSE in normalised units or
  relative L2 (`forward_loss`); with `rollout_loss_steps` K > 1 and K-step targets, the mean over k = 1..K of the
  same error after k latent steps: "forward" (k = 1) at weight 1/K and "rollout" (k >= 2) at (K - 1)/K.
- inverse encoding x `inv_enc_weight` (`use_inverse_losses`): MSE(decode(z_t, X_q), u_t(X_q)); a point cloud is
  decoded at its own points. For a residual model that error is the start correction the prediction already holds.
- inverse decoding x `inv_dec_weight`: MSE(encode(predict(z_{t+1}) on the grid), sg(z_{t+1})), or, with
  `inverse_decoding_points="queries"` (point-cloud encoders), re-encoded from the Q points only.
- latent consistency x `lambda_latent_consistency`: mean over q = 1..M of ||step^q(z_t) - sg(encode(u_t+q))||^2
  relative to sg(encode(u_t+q))^2 (`latent_consistency_norm="latent"`) or to the latent step (`"step"`).
A term with a frequency runs on every n-th step only (`ops.cond`: the other steps do not compute it), and an
inverse term whose weight is 0 is not computed either. Where a prediction is compared, a residual model's
`decode(z_next) + (u_t - decode(z_t))` is used.

Evaluation (`training=False`, `model.evaluate`) reports the one-step MSE on the full grid (`val_forward_loss`, the
loss) and every other term beside it, on the full grid, without adding them to the loss. (A training run validates
on the forward loss alone unless `training.validation_terms: all` asks for this.)
"""

from typing import Callable, NamedTuple

import keras
from keras import ops

from upt_keras.backend import inference_mode
from upt_keras.distribute import scale_loss_for_replicas
from upt_keras.layers.encoder import split_inputs
from upt_keras.objectives.losses import field_mse, field_relative_l2, latent_mse
from upt_keras.objectives.sampling import QuerySampler
from upt_keras.objectives.settings import OBJECTIVE_KEYS, ObjectiveSettings
from upt_keras.schema import ConfigError, validated

PACKAGE = "upt_keras"


class Term(NamedTuple):
    """One weighted term of the loss: `weight * compute(pass)` on every `frequency`-th step."""

    name: str  # its tracker reads "<name>_loss"
    weight: object  # a float, or a variable a curriculum sets (a term at weight 0 is skipped)
    compute: Callable
    frequency: int = 1


class TrainingPass(NamedTuple):
    """What one training step computes once and every term reads."""

    fields: object  # u_t as the encoder takes it
    positions: object  # (B, N, d) for a point cloud, else None
    targets: list  # [u_t+1, u_t+2, ...] on the grid
    z: object  # encode(u_t)
    z_next: object  # step(z_t) (of the noised z_t with latent_noise)
    idx: object  # (Q,) sampled grid indices, or None: every point
    coords: object  # (Q, d) the sampled points
    correction: object  # a residual model's u_t - decode(z_t) at the points (else 0.0)
    prediction: object  # (B, Q, C) u_t+1 at the points: decode(z_next) + correction
    where: object = None  # (B, M, d) the points the targets are at, or None: on the grid


@keras.saving.register_keras_serializable(package=PACKAGE)
class UPTObjective(keras.layers.Layer):
    """The weighted sum of the forward, rollout, inverse and consistency terms (see the module docstring).

    Args: the keys of `ObjectiveSettings` (each checked there), and
        num_queries: int or None, the Q grid points each training step decodes (None: every point).
        query_strategy: "uniform" or "stratified" (`QuerySampler`).
        seed: int or None, for the query sampling and the latent noise.

    Example:
    >>> objective = UPTObjective(use_inverse_losses=True, lambda_inv_enc=0.01, num_queries=2048)
    >>> model = UPT.from_preset("b64", objective=objective)
    """

    def __init__(self, num_queries=None, query_strategy="uniform", seed=None, **settings):
        layer_kwargs = {k: settings.pop(k) for k in list(settings) if k not in OBJECTIVE_KEYS}
        super().__init__(**dict({"name": "objective"}, **layer_kwargs))
        try:
            self.settings = validated(ObjectiveSettings, settings)
        except ConfigError as exc:
            raise ValueError(f"UPTObjective: {exc}") from None
        for name in OBJECTIVE_KEYS:
            setattr(self, name, getattr(self.settings, name))
        self.num_queries, self.query_strategy, self.seed = num_queries, query_strategy, seed
        self.target_steps = self.settings.target_steps
        self.query_sampler = None  # made by `attach`, which knows the grid
        # The weights a curriculum sets and an own step counter: variables, so that compiled steps (and JAX) see
        # the values callbacks assign; the model tracks them through this layer.
        self.inv_enc_weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.lambda_inv_enc),
                                              trainable=False, name="inv_enc_weight", dtype="float32")
        self.inv_dec_weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.lambda_inv_dec),
                                              trainable=False, name="inv_dec_weight", dtype="float32")
        self.train_step_counter = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                  name="train_step_counter", dtype="int32")
        if self.latent_noise > 0:
            self.noise_seed = keras.random.SeedGenerator(seed, name="latent_noise_seed")
        self.trackers = {name: keras.metrics.Mean(name=f"{name}_loss") for name in self._term_names()}
        if self.use_inverse_losses:
            self.trackers.update({f"lambda_{name}": keras.metrics.Mean(name=f"lambda_{name}")
                                  for name in ("inv_enc", "inv_dec")})
        self.built = True

    def _term_names(self):
        names = ["forward"] + (["rollout"] if self.rollout_loss_steps > 1 else [])
        names += ["inv_enc", "inv_dec"] if self.use_inverse_losses else []
        return names + (["consistency"] if self.lambda_latent_consistency > 0 else [])

    def attach(self, model):
        """Checks the settings against `model` and draws query points on its grid. `UPT.__init__` calls it."""
        points = model.encoder.input_kind == "points"
        if self.inverse_decoding_points == "queries" and not points:
            raise ValueError("inverse_decoding_points='queries' re-encodes the decoded field from the Q sampled "
                             "points, which needs a point-cloud encoder; a grid encoder re-encodes the full grid "
                             "('all')")
        if self.inverse_decoding_points == "queries" and (self.num_queries or 0) < model.encoder.num_supernodes:
            raise ValueError(f"inverse_decoding_points='queries' needs num_queries >= the encoder's num_supernodes="
                             f"{model.encoder.num_supernodes}, got num_queries={self.num_queries}")
        if self.query_sampler is None:
            self.query_sampler = QuerySampler(model.grid_shape, self.num_queries, self.query_strategy, seed=self.seed,
                                              name="queries")

    def set_inverse_weights(self, lambda_inv_enc, lambda_inv_dec):
        """New base inverse-loss weights (a tuner trial's): the settings and the weight variables."""
        self.settings.lambda_inv_enc, self.settings.lambda_inv_dec = float(lambda_inv_enc), float(lambda_inv_dec)
        self.lambda_inv_enc, self.lambda_inv_dec = self.settings.lambda_inv_enc, self.settings.lambda_inv_dec
        self.inv_enc_weight.assign(self.lambda_inv_enc)
        self.inv_dec_weight.assign(self.lambda_inv_dec)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def terms(self, model, p):
        """The weighted terms of the training step `p`, in the order they are summed and shown."""
        # the forward weight spread evenly over the K steps the targets hold: step 1, and steps 2..K as "rollout"
        steps, weight = len(p.targets[: self.rollout_loss_steps]), self.forward_loss_weight
        out = [Term("forward", weight / steps, lambda p: self.forward_term(model, p))]
        if steps > 1:
            out.append(Term("rollout", weight * (steps - 1) / steps, lambda p: self.rollout_term(model, p)))
        if self.use_inverse_losses:
            out += [Term("inv_enc", self.inv_enc_weight, lambda p: self.inverse_encoding(model, p),
                         self.inverse_loss_frequency),
                    Term("inv_dec", self.inv_dec_weight, lambda p: self.inverse_decoding(model, p),
                         self.inverse_loss_frequency)]
        if self.lambda_latent_consistency > 0:
            out.append(Term("consistency", self.lambda_latent_consistency, lambda p: self.consistency_step(model, p),
                            self.latent_consistency_frequency))
        return out

    # ------------------------------------------------------------------------------------------------ the loss
    def __call__(self, model, x, y, y_pred=None, training=True):
        return self.compute_loss(model, x, y, y_pred, training)

    def compute_loss(self, model, x, y, y_pred=None, training=True):
        """The loss of a batch. `y_pred` is the model's output: the latent step `{"z", "z_next"}` while training,
        the one-step prediction on the grid in evaluation."""
        if not training:
            return self.evaluation_loss(model, x, y, y_pred)
        p = self.training_pass(model, x, y, y_pred)
        total = ops.zeros((), "float32")
        for term in self.terms(model, p):
            value, on = self._run(term, p)
            self.trackers[term.name].update_state(value, sample_weight=on)
            total = total + ops.cast(term.weight, "float32") * value
        if self.use_inverse_losses:
            self.trackers["lambda_inv_enc"].update_state(self.inv_enc_weight)
            self.trackers["lambda_inv_dec"].update_state(self.inv_dec_weight)
        self.train_step_counter.assign_add(1)
        return scale_loss_for_replicas(total)  # per-replica mean -> share of the global loss under tf.distribute

    def _run(self, term, p):
        """(value, 1.0 when computed this step); a term on a frequency, or with a variable weight, sits in a cond."""
        variable_weight = not isinstance(term.weight, (int, float))
        if term.frequency == 1 and not variable_weight:
            return term.compute(p), 1.0
        on = self.on_this_step(term.frequency)
        if variable_weight:
            on = ops.logical_and(on, ops.greater(term.weight, 0.0))
        return ops.cond(on, lambda: term.compute(p), lambda: ops.zeros((), "float32")), ops.cast(on, "float32")

    def on_this_step(self, frequency):
        """Whether a term on every `frequency`-th step runs on this training step (a boolean tensor)."""
        return ops.equal(ops.mod(self.train_step_counter, frequency), 0)

    def training_pass(self, model, x, y, latents):
        """The pass every term reads, from the model's training output `latents` = `{"z", "z_next"}`."""
        fields, positions = split_inputs(x)
        where = self.target_points(x)
        first, later = self.split_targets(model, y, points=where is not None)
        z, z_next = latents["z"], latents["z_next"]
        if self.latent_noise > 0:
            # Noise on the approximator's input, relative to the latent's RMS: the approximator learns to step
            # latents a little off the encoder's range, as its own outputs are in a latent rollout.
            rms = ops.sqrt(ops.mean(ops.square(ops.stop_gradient(ops.cast(z, "float32")))))
            noise = keras.random.normal(ops.shape(z), seed=self.noise_seed, dtype="float32") * rms * self.latent_noise
            z_next = model.step(z + ops.cast(noise, z.dtype))
        if where is None:
            idx = self.query_sampler.sample()  # (Q,) grid indices, or None = every point
            coords = ops.convert_to_tensor(model.grid_coords)
            coords = coords if idx is None else ops.take(coords, idx, axis=0)
        else:  # Q of the M target points, the same indices for the batch (their positions differ per sample)
            num = where.shape[1] if where.shape[1] is not None else ops.shape(where)[1]
            idx = self.query_sampler.sample(num_points=num)
            coords = where if idx is None else ops.take(where, idx, axis=1)
        correction = 0.0
        if model.residual and positions is not None:  # u_t read at the query points from the input points
            correction = model.start_correction(fields, z, coords, positions=positions)
        elif model.residual:  # on the grid points: u_t is read there, not interpolated
            grid_idx = idx if where is None else None  # indices into the target points are no grid indices
            correction = model.start_correction(fields, z, None if idx is None and where is None else coords,
                                                idx=grid_idx, flat=True)
        prediction = model.decode(z_next, coords, gradients=True) + correction  # the forward term's, decoded once
        return TrainingPass(fields, positions, [first] + later, z, z_next, idx, coords, correction, prediction, where)

    @staticmethod
    def target_points(x):
        """The points the targets are at, `x["coords"]` (B, M, d) of a point cloud's inputs, or None: the grid."""
        if isinstance(x, dict) and x.get("coords") is not None:
            return ops.cast(x["coords"], "float32")
        return None

    @staticmethod
    def encode_frame(model, frame, where=None):
        """`encode` of a target frame: on the grid, or at the points `where` (B, M, d)."""
        return model.encode_grid(frame) if where is None else model.encode(frame, where)

    # ------------------------------------------------------------------------------------------------ the terms
    def error(self, model, pred, target):
        """The forward term's error of physical fields: `field_mse` in normalised units (`forward_loss="mse"`) or
        the relative L2 error per sample (`"relative"`, PDEBench's nRMSE as a loss)."""
        if self.forward_loss == "relative":
            return field_relative_l2(pred, target)
        return field_mse(pred, target, model.field_stats()[1])

    def at_points(self, model, frame, idx, flat=False):
        """A grid frame (B, *grid, C) as (B, Q, C) at the flat grid indices `idx` (None: every point); `flat`: the
        frame is already (B, M, C) at points (indices into those)."""
        if not flat:
            frame = ops.reshape(frame, (ops.shape(frame)[0], model.num_points, model.num_fields))
        return frame if idx is None else ops.take(frame, idx, axis=1)

    def forward_term(self, model, p):
        """The one-step error at the sampled points."""
        return self.error(model, p.prediction, self.at_points(model, p.targets[0], p.idx, p.where is not None))

    def rollout_term(self, model, p):
        """The mean error of latent steps 2..K at the sampled points (`rollout_loss_steps` K)."""
        errors, z = [], p.z_next
        for target in p.targets[1: self.rollout_loss_steps]:
            z = model.step(z)
            pred = model.decode(z, p.coords, gradients=True) + p.correction
            errors.append(self.error(model, pred, self.at_points(model, target, p.idx, p.where is not None)))
        return ops.mean(ops.stack(errors))

    def inverse_encoding(self, model, p):
        std = model.field_stats()[1]
        if model.residual:  # u_t - decode(z_t) at the sampled points is the reconstruction error itself
            return ops.mean(ops.square(p.correction / std))
        if p.positions is not None:  # a point cloud, decoded at its own points
            return field_mse(model.decode(p.z, p.positions, gradients=True), p.fields, std)
        return field_mse(model.decode(p.z, p.coords, gradients=True), self.at_points(model, p.fields, p.idx), std)

    def inverse_decoding(self, model, p):
        if self.inverse_decoding_points == "queries":  # decode and re-encode the Q sampled points only
            pred = model.decode(p.z_next, p.coords, gradients=True)
            where = ops.cast(p.coords, "float32")
            if len(where.shape) == 2:  # grid points, the same for the batch
                where = ops.broadcast_to(where[None], ops.shape(pred)[:2] + (len(model.grid_shape),))
            return latent_mse(model.encode(pred, where), ops.stop_gradient(p.z_next))
        # the full grid: when every grid point is a query, the forward term's prediction (in grid order) is it
        on_grid = p.idx is None and p.where is None
        pred = p.prediction if on_grid else model.predict_from_latents(p.fields, p.z, p.z_next, gradients=True,
                                                                         positions=p.positions)
        return latent_mse(model.encode_grid(pred), ops.stop_gradient(p.z_next))

    def consistency_step(self, model, p):
        # under "step" the approximator alone: it steps the constant sg(z_t) once more (see `consistency`)
        first = (model.step(ops.stop_gradient(ops.cast(p.z, "float32")))
                 if self.latent_consistency_norm == "step" else p.z_next)
        return self.consistency(model, p.z, first, p.targets[0], p.targets[1:], p.where)

    def consistency(self, model, z, z_next, target, later=(), where=None):
        """Latent consistency: mean over q = 1..M of ||step^q(z_t) - sg(z*_t+q)||^2 / a constant norm.

        `z*_t+q = encode(u_t+q)`. The approximator's output is pulled onto the encoding of the true next frame(s),
        so a latent rollout stays where the encoder would put the physical one; with M = `latent_consistency_steps`
        > 1 it also learns to step on its own outputs (M approximator steps and M encodings, no decoding). The
        error is relative, so the encoder cannot shrink the term by shrinking its latents: to the target's second
        moment (`latent_consistency_norm="latent"`, LE-PDE's), or to the latent displacement ||sg(z*_t+q - z_t)||^2,
        the error of an approximator that does not move (`"step"`). Latents change little per step against their
        size (a few per cent on Burgers), so under "latent" an approximator that learned no dynamics already scores
        ~1e-3; under "step" it scores 1.

        In training, under "latent" `z_next` is the forward pass's `step(z_t)`, so the gradient reaches the
        approximator and, through `z_t`, the encoder; under "step" it is `step(sg(z_t))` and the term trains the
        approximator only (sharing the forward pass there diverged on both benchmark sets,
        benchmarks/results/results_accuracy.md). Without gradients (evaluation) both are the same values. Target
        frames at points are encoded at `where` (B, M, d).
        """
        z_start = ops.stop_gradient(ops.cast(z, "float32"))

        def one(zq, frame):
            z_target = ops.stop_gradient(ops.cast(self.encode_frame(model, frame, where), "float32"))
            err = ops.mean(ops.square(ops.cast(zq, "float32") - z_target))
            reference = z_target if self.latent_consistency_norm == "latent" else z_target - z_start
            return err / (ops.mean(ops.square(reference)) + 1e-12)

        terms, zq = [one(z_next, target)], z_next
        for frame in list(later)[: self.latent_consistency_steps - 1]:
            zq = model.step(zq)
            terms.append(one(zq, frame))
        return terms[0] if len(terms) == 1 else ops.mean(ops.stack(terms))

    # ------------------------------------------------------------------------------------------------ evaluation
    def evaluation_loss(self, model, x, y, y_pred):
        """The one-step MSE on the full grid (the loss); every other term reported beside it."""
        std = model.field_stats()[1]
        where = self.target_points(x)
        first, later = self.split_targets(model, y, points=where is not None)
        forward = field_mse(y_pred, first, std)
        self.trackers["forward"].update_state(forward)
        if len(self.trackers) > 1:
            fields, positions = split_inputs(x)
            z = model.encode(fields, positions)  # the terms below share one encoding and one latent step
            coords = ops.convert_to_tensor(model.grid_coords) if where is None else where
            p = TrainingPass(fields, positions, [first] + later, z, model.step(z), None, coords, 0.0, y_pred, where)
            if model.residual:
                p = p._replace(correction=model.start_correction(fields, z, where, flat=True, positions=positions))
            if self.rollout_loss_steps > 1 and later:
                self.trackers["rollout"].update_state(self.rollout_term(model, p))
            if self.use_inverse_losses:
                self.trackers["inv_enc"].update_state(self.inverse_encoding(model, p))
                self.trackers["inv_dec"].update_state(latent_mse(self.encode_frame(model, p.prediction, where),
                                                                 p.z_next))
                self.trackers["lambda_inv_enc"].update_state(self.inv_enc_weight)
                self.trackers["lambda_inv_dec"].update_state(self.inv_dec_weight)
            if self.lambda_latent_consistency > 0:
                self.trackers["consistency"].update_state(self.consistency(model, z, p.z_next, first, later, where))
        return scale_loss_for_replicas(forward)

    def inverse_losses(self, model, inputs):
        """Inverse-encoding and inverse-decoding MSE on the full grid, as floats (for evaluation reports)."""
        with inference_mode():
            fields, positions = split_inputs(inputs)
            fields = ops.convert_to_tensor(fields, "float32")
            z = model.encode(fields, positions)
            coords = ops.convert_to_tensor(model.grid_coords)
            correction = model.start_correction(fields, z, flat=True, positions=positions) if model.residual else 0.0
            z_next = model.step(z)
            p = TrainingPass(fields, positions, [], z, z_next, None, coords, correction,
                             model.predict_from_latents(fields, z, z_next, positions=positions))
            inv_enc = self.inverse_encoding(model, p)
            inv_dec = latent_mse(model.encode_grid(p.prediction), p.z_next)
        return {"inv_enc_loss": float(ops.convert_to_numpy(inv_enc)),
                "inv_dec_loss": float(ops.convert_to_numpy(inv_dec))}

    def split_targets(self, model, y, points=False):
        """(first-step target, [targets of steps 2..K]) from one-step (B, *grid, C) or K-step (B, K, *grid, C);
        with `points`, from (B, M, C) or (B, K, M, C)."""
        grid_rank = 1 if points else len(model.grid_shape)
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
            space = "M points" if points else f"*{model.grid_shape}"
            raise ValueError(
                f"targets of shape {tuple(y.shape)} do not fit the model: expected (B, {space}, "
                f"{model.num_fields}) or, with rollout_loss_steps={self.rollout_loss_steps} and "
                f"latent_consistency_steps={self.latent_consistency_steps}, "
                f"(B, {self.target_steps}, {space}, {model.num_fields})"
            )
        return y[:, 0], [y[:, k] for k in range(1, self.target_steps)]

    # ------------------------------------------------------------------------------------------------ config
    def load_own_variables(self, store):
        if not list(store.keys()):  # a file from before the objective was an object (`UPT.load_own_variables`)
            return
        super().load_own_variables(store)

    def load_legacy_variables(self, store, model_variables):
        """A model file from before the objective was an object of its own keeps this objective's weights and step
        counter among the model's variables: `UPT.load_own_variables` hands them here. True when it did."""
        if model_variables or not list(store.keys()):
            return False
        for i, variable in enumerate((self.inv_enc_weight, self.inv_dec_weight, self.train_step_counter)):
            variable.assign(store[str(i)])
        return True

    @classmethod
    def from_legacy_model_config(cls, config):
        """A model config with the objective's settings among the model's (files before the objective was an
        object) turned into one with an `objective`; other configs unchanged."""
        keys = OBJECTIVE_KEYS + ("num_queries", "query_strategy", "seed")
        legacy = {k: config.pop(k) for k in list(config) if k in keys}
        return dict(config, objective=cls(**legacy)) if legacy else config

    def get_config(self):
        config = super().get_config()
        config.update(self.settings.model_dump(), num_queries=self.num_queries, query_strategy=self.query_strategy,
                      seed=self.seed)
        return config
