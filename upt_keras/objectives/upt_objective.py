"""The UPT training objective: forward, inverse-encoding, inverse-decoding, rollout and latent-consistency terms.

`UPT.compute_loss` calls `compute_loss(model, ...)`; this module owns every term,
the query sampling and the trackers. The settings (`TRAINING_DEFAULTS`) are
attributes of the model, so callbacks, the tuner and `get_config` read them
there; `configure` validates them and creates the model-owned state.

Training pairs are `(u_t, u_{t+1})`. `u_t` is what the encoder takes: fields on
the grid (B, *grid, C) for a grid encoder, or `{"fields": (B, N, C),
"positions": (B, N, d)}` for a point-cloud encoder. Targets are always on the
model's output grid: (B, *grid, C), or (B, K, *grid, C) for K-step terms.

A residual model (`UPT(residual=True)`) predicts `decode(z_next, X) + (u_t(X) - decode(z_t, X))` wherever
a prediction is compared below (forward, rollout and inverse-decoding terms); gradients reach the decoder through
both decodes.

Terms (normalised units, every field alike):
- forward: MSE(decode(step(encode(u_t)), X_q), u_{t+1}(X_q)) on Q sampled grid points, or with
  `forward_loss="relative"` the relative L2 error ||pred - u_{t+1}|| / ||u_{t+1}|| per sample and field (physical
  units, over the Q points); with `rollout_loss_steps` K > 1 the mean over k = 1..K of the same error after k
  latent steps. Evaluation reports the one-step MSE (`val_forward_loss`) either way.
- on every `inverse_loss_frequency`-th step when `use_inverse_losses` and a weight is > 0:
  - inverse encoding x `inv_enc_weight`: MSE(decode(encode(u_t), X_q), u_t(X_q)) (for a point
    cloud: at its own points),
  - inverse decoding x `inv_dec_weight`: MSE(encode(decode(z_{t+1}, X)), stop_gradient(z_{t+1})), with X the
    full grid (`inverse_decoding_points="all"`) or, for a point-cloud encoder, only the Q sampled points
    (`"queries"`: the encoder re-encodes the decoded field from those Q points).
  On an inverse step the next-step latent is decoded once on X and serves both the forward and the
  inverse-decoding term; on other steps the inverse terms are not computed at all, nor is the inverse
  decoding's encoding while its weight is 0 (it is then reported as 0).
- latent consistency x `lambda_latent_consistency`, on every `latent_consistency_frequency`-th step: mean over q = 1..M of
  ||step^q(z_t) - sg(encode(u_t+q))||^2 / mean(sg(encode(u_t+q))^2) (`latent_consistency_norm="latent"`),
  or / mean(sg(encode(u_t+q) - z_t)^2), the error of the identity (`"step"`).
"""

import keras
from keras import ops

from upt_keras.backend import inference_mode
from upt_keras.distribute import scale_loss_for_replicas
from upt_keras.objectives.losses import field_mse, field_relative_l2, latent_mse
from upt_keras.objectives.sampling import QuerySampler

TRAINING_DEFAULTS = dict(
    use_inverse_losses=False,
    lambda_inv_enc=0.01,
    lambda_inv_dec=0.01,
    inverse_loss_frequency=1,
    num_queries=None,
    query_strategy="uniform",
    seed=None,
    forward_loss_weight=1.0,
    rollout_loss_steps=1,
    lambda_latent_consistency=0.0,
    latent_consistency_steps=1,
    latent_noise=0.0,
    inverse_decoding_points="all",
    latent_consistency_norm="latent",
    latent_consistency_frequency=1,
    forward_loss="mse",
)


def configure(model, **settings):
    """Validates the training settings (keys of `TRAINING_DEFAULTS`), sets them on `model`, creates its state."""
    s = dict(TRAINING_DEFAULTS, **settings)
    for name in ("lambda_inv_enc", "lambda_inv_dec", "forward_loss_weight", "lambda_latent_consistency",
                 "latent_noise"):
        if s[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {s[name]}")
        s[name] = float(s[name])
    for name in ("inverse_loss_frequency", "rollout_loss_steps", "latent_consistency_steps",
                 "latent_consistency_frequency"):
        if int(s[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {s[name]}")
        s[name] = int(s[name])
    s["use_inverse_losses"] = bool(s["use_inverse_losses"])
    if s["inverse_decoding_points"] not in ("all", "queries"):
        raise ValueError(f"inverse_decoding_points must be 'all' or 'queries', got {s['inverse_decoding_points']!r}")
    if s["forward_loss"] not in ("mse", "relative"):
        raise ValueError(f"forward_loss must be 'mse' or 'relative', got {s['forward_loss']!r}")
    if s["latent_consistency_norm"] not in ("latent", "step"):
        raise ValueError(f"latent_consistency_norm must be 'latent' or 'step', got {s['latent_consistency_norm']!r}")
    if s["inverse_decoding_points"] == "queries" and model.encoder.input_kind != "points":
        raise ValueError("inverse_decoding_points='queries' re-encodes the decoded field from the Q sampled points, "
                         "which needs a point-cloud encoder; a grid encoder re-encodes the full grid ('all')")
    if (s["inverse_decoding_points"] == "queries" and s["num_queries"] is not None
            and s["num_queries"] < getattr(model.encoder, "num_supernodes", 0)):
        raise ValueError(f"inverse_decoding_points='queries' needs num_queries >= the encoder's num_supernodes="
                         f"{model.encoder.num_supernodes}, got num_queries={s['num_queries']}")
    for name, value in s.items():
        setattr(model, name, value)
    # Frames per training target: K-step targets (B, K, *grid, C) when either multi-step term needs them.
    model.target_steps = max(model.rollout_loss_steps, model.latent_consistency_steps)
    if model.latent_noise > 0:
        model.noise_seed = keras.random.SeedGenerator(model.seed, name="latent_noise_seed")
    model.query_sampler = QuerySampler(model.grid_shape, model.num_queries, model.query_strategy, seed=model.seed,
                                       name="queries")
    # Effective inverse-loss weights and an own step counter: model-owned variables, so callbacks and compiled
    # steps see the same values.
    model.inv_enc_weight = model.add_weight(
        shape=(), initializer=keras.initializers.Constant(model.lambda_inv_enc), trainable=False,
        name="inv_enc_weight", dtype="float32",
    )
    model.inv_dec_weight = model.add_weight(
        shape=(), initializer=keras.initializers.Constant(model.lambda_inv_dec), trainable=False,
        name="inv_dec_weight", dtype="float32",
    )
    model.train_step_counter = model.add_weight(
        shape=(), initializer="zeros", trainable=False, name="train_step_counter", dtype="int32"
    )
    model.forward_loss_tracker = keras.metrics.Mean(name="forward_loss")
    if model.lambda_latent_consistency > 0:
        model.consistency_tracker = keras.metrics.Mean(name="consistency_loss")
    if model.rollout_loss_steps > 1:  # mean MSE of the latent steps 2..K
        model.rollout_loss_tracker = keras.metrics.Mean(name="rollout_loss")
    if model.use_inverse_losses:
        model.inv_enc_tracker = keras.metrics.Mean(name="inv_enc_loss")
        model.inv_dec_tracker = keras.metrics.Mean(name="inv_dec_loss")
        model.inv_enc_weight_tracker = keras.metrics.Mean(name="lambda_inv_enc")
        model.inv_dec_weight_tracker = keras.metrics.Mean(name="lambda_inv_dec")


def settings(model):
    """The training settings of `model`, as `configure` takes them (for `get_config`)."""
    return {name: getattr(model, name) for name in TRAINING_DEFAULTS}


def trackers(model):
    """The objective's metrics, in the order the progress bar shows them."""
    out = [model.forward_loss_tracker]
    if model.lambda_latent_consistency > 0:
        out.append(model.consistency_tracker)
    if model.rollout_loss_steps > 1:
        out.append(model.rollout_loss_tracker)
    if model.use_inverse_losses:
        out += [model.inv_enc_tracker, model.inv_dec_tracker, model.inv_enc_weight_tracker,
                model.inv_dec_weight_tracker]
    return out


def input_fields(model, x):
    """(fields, positions) of the model input: positions is None for a grid encoder."""
    if isinstance(x, dict):
        return x["fields"], x.get("positions")
    return x, None


def compute_loss(model, x, y, y_pred, training=True):
    fields, positions = input_fields(model, x)
    _, std = model.field_stats()
    y, later = split_targets(model, y)
    if not training:  # evaluation: y_pred is the full-grid one-step prediction
        return _evaluation_loss(model, fields, positions, y, later, y_pred, std)

    z, z_next = y_pred["z"], y_pred["z_next"]
    batch = ops.shape(fields)[0]
    u_next = ops.reshape(y, (batch, model.num_points, model.num_fields))
    coords = ops.convert_to_tensor(model.grid_coords)
    idx = model.query_sampler.sample()  # (Q,) grid indices, or None = every point
    coords_q = coords if idx is None else ops.take(coords, idx, axis=0)
    u_next_q = u_next if idx is None else ops.take(u_next, idx, axis=1)
    correction_q = start_correction(model, z, fields, idx, coords_q)

    def forward_only():
        forward = forward_error(model, model._decode(z_next, coords_q) + correction_q, u_next_q, std)
        return forward, ops.zeros((), "float32"), ops.zeros((), "float32")

    def with_inverse():
        if model.residual:  # the correction is u_t - decode(z_t) at the sampled points: the inverse encoding's error
            inv_enc = ops.mean(ops.square(correction_q / std))
        else:
            inv_enc = _inverse_encoding(model, z, fields, positions, idx, coords_q, std)
        if model.inverse_decoding_points == "queries":  # decode and re-encode the Q sampled points only
            pred_q = model._decode(z_next, coords_q)  # (B, Q, C), physical
            where = ops.broadcast_to(ops.cast(coords_q, "float32")[None], (batch,) + tuple(coords_q.shape))
            inv_dec = _if_weighted(model.inv_dec_weight,
                                   lambda: latent_mse(model.encode(pred_q, where), ops.stop_gradient(z_next)))
            return forward_error(model, pred_q, u_next_q, std), inv_enc, inv_dec
        # Decode the next latent once on the full grid: it serves the forward loss (at the sampled points)
        # and the inverse decoding (re-encoded).
        u_next_pred = model._decode(z_next, coords)  # (B, N, C), physical
        if model.residual:  # every point a query: the correction at the queries is the full grid's
            u_next_pred = u_next_pred + (correction_q if idx is None else start_correction(model, z, fields, None,
                                                                                            coords))
        pred_q = u_next_pred if idx is None else ops.take(u_next_pred, idx, axis=1)
        forward = forward_error(model, pred_q, u_next_q, std)
        inv_dec = _if_weighted(model.inv_dec_weight,
                               lambda: latent_mse(model.encode_grid(u_next_pred), ops.stop_gradient(z_next)))
        return forward, inv_enc, inv_dec

    if not model.use_inverse_losses:
        forward = forward_only()[0]
        total = model.forward_loss_weight * rollout_term(model, forward, z_next, later, idx, coords_q, std,
                                                         correction_q)
    else:
        w_enc, w_dec = model.inv_enc_weight, model.inv_dec_weight
        on = ops.logical_and(
            on_this_step(model, model.inverse_loss_frequency),
            ops.greater(w_enc + w_dec, 0.0),
        )
        forward, inv_enc, inv_dec = ops.cond(on, with_inverse, forward_only)
        fwd = rollout_term(model, forward, z_next, later, idx, coords_q, std, correction_q)
        total = model.forward_loss_weight * fwd + w_enc * inv_enc + w_dec * inv_dec
        on_weight = ops.cast(on, "float32")
        model.inv_enc_tracker.update_state(inv_enc, sample_weight=on_weight)
        model.inv_dec_tracker.update_state(inv_dec, sample_weight=on_weight)
        model.inv_enc_weight_tracker.update_state(w_enc)
        model.inv_dec_weight_tracker.update_state(w_dec)
    if model.lambda_latent_consistency > 0:
        def consistency():
            # under "step" the approximator alone: it steps the constant sg(z_t) once more (see consistency_term)
            first = (model.step(ops.stop_gradient(ops.cast(z, "float32")))
                     if model.latent_consistency_norm == "step" else z_next)
            return consistency_term(model, z, first, y, later)

        if model.latent_consistency_frequency == 1:
            consistency, on = consistency(), 1.0
        else:  # every frequency-th step only: the other steps skip its encoding and approximator pass
            on = on_this_step(model, model.latent_consistency_frequency)
            consistency = ops.cond(on, consistency, lambda: ops.zeros((), "float32"))
            on = ops.cast(on, "float32")
        model.consistency_tracker.update_state(consistency, sample_weight=on)
        total = total + model.lambda_latent_consistency * consistency
    model.train_step_counter.assign_add(1)
    model.forward_loss_tracker.update_state(forward)
    return scale_loss_for_replicas(total)  # per-replica mean -> share of the global loss under tf.distribute


def _if_weighted(weight, term):
    """`term()` while `weight` > 0, else 0 without computing it (an inverse term whose weight is 0 costs nothing)."""
    return ops.cond(ops.greater(weight, 0.0), term, lambda: ops.zeros((), "float32"))


def on_this_step(model, frequency):
    """Whether a term on every `frequency`-th step runs on this training step (a boolean tensor)."""
    return ops.equal(ops.mod(model.train_step_counter, frequency), 0)


def forward_error(model, pred, target, std):
    """The forward term's error of predicted physical fields: `field_mse` in normalised units (`forward_loss="mse"`)
    or the relative L2 error per sample (`"relative"`, PDEBench's nRMSE as a loss)."""
    if model.forward_loss == "relative":
        return field_relative_l2(pred, target)
    return field_mse(pred, target, std)


def start_correction(model, z, fields, idx, coords_q):
    """A residual model's `u_t - decode(z_t)` at the sampled grid points `idx` (None: all), or 0.0."""
    if not model.residual:
        return 0.0
    if idx is None:  # every grid point a query, in grid order: the model's correction on the grid, flattened
        correction = model.start_correction(fields, z)
        return ops.reshape(correction, (ops.shape(fields)[0], model.num_points, model.num_fields))
    return model.start_correction(fields, z, coords_q, idx=idx)


def _inverse_encoding(model, z, fields, positions, idx, coords_q, std):
    """MSE of the decoded input: at the sampled grid points (grid input) or at the input's own points."""
    if positions is None:
        u_t = ops.reshape(fields, (ops.shape(fields)[0], model.num_points, model.num_fields))
        return field_mse(model._decode(z, coords_q), u_t if idx is None else ops.take(u_t, idx, axis=1), std)
    return field_mse(model._decode(z, positions), fields, std)


def _evaluation_loss(model, fields, positions, y, later, y_pred, std):
    forward = field_mse(y_pred, y, std)
    model.forward_loss_tracker.update_state(forward)
    rollout = bool(later) and model.rollout_loss_steps > 1
    if not (model.use_inverse_losses or rollout or model.lambda_latent_consistency > 0):
        return scale_loss_for_replicas(forward)
    # the terms below are reported, not added to the loss; they share one encoding and one latent step
    z = model.encode(fields, positions)
    z_next = model.step(z)
    if model.use_inverse_losses:  # on the full grid
        model.inv_enc_tracker.update_state(_inverse_encoding(model, z, fields, positions, None, model.grid_coords,
                                                             std))
        model.inv_dec_tracker.update_state(latent_mse(model.encode_grid(y_pred), z_next))
        model.inv_enc_weight_tracker.update_state(model.inv_enc_weight)
        model.inv_dec_weight_tracker.update_state(model.inv_dec_weight)
    if rollout:  # the latent rollout error of steps 2..K, on the full grid
        coords = ops.convert_to_tensor(model.grid_coords)
        rollout_term(model, forward, z_next, later, None, coords, std,
                     start_correction(model, z, fields, None, coords))
    if model.lambda_latent_consistency > 0:
        model.consistency_tracker.update_state(consistency_term(model, z, z_next, y, later))
    return scale_loss_for_replicas(forward)


def consistency_term(model, z, z_next, target, later=()):
    """Latent consistency: mean over q = 1..M of ||step^q(z_t) - sg(z*_t+q)||^2 / a constant norm.

    `z*_t+q = encode(u_t+q)` (the frames are on the output grid). The approximator's output is pulled onto the
    encoding of the true next frame(s), so a latent rollout stays where the encoder would put the physical one;
    with M = `latent_consistency_steps` > 1 it also learns to step on its own outputs, at the cost of M
    approximator steps and M encodings (no decoding). The targets are constants (no gradient). The error is
    relative, so the encoder cannot shrink the term by shrinking its latents: to the target's second moment
    (`latent_consistency_norm="latent"`, LE-PDE's), or to the latent displacement ||sg(z*_t+q - z_t)||^2, the
    error of an approximator that does not move (`"step"`). Latents change little per step against their size
    (a few per cent on Burgers), so under "latent" an approximator that learned no dynamics already scores ~1e-3;
    under "step" it scores 1.

    `z_next` is the first step the term compares. In training, under "latent" it is the forward pass's
    `step(z_t)`, so the term's gradient reaches the approximator and, through `z_t`, the encoder; under "step"
    `compute_loss` passes `step(sg(z_t))` (one more approximator pass) and the term trains the approximator only.
    Sharing the forward pass there (encoder in the term too) diverged on both benchmark sets
    (benchmarks/results_accuracy.md). Without gradients (evaluation) both are the same values.
    """
    z_start = ops.stop_gradient(ops.cast(z, "float32"))

    def one(zq, frame):
        z_target = ops.stop_gradient(ops.cast(model.encode_grid(frame), "float32"))
        err = ops.mean(ops.square(ops.cast(zq, "float32") - z_target))
        reference = z_target if model.latent_consistency_norm == "latent" else z_target - z_start
        return err / (ops.mean(ops.square(reference)) + 1e-12)

    terms, zq = [one(z_next, target)], z_next
    for frame in list(later)[: model.latent_consistency_steps - 1]:
        zq = model.step(zq)
        terms.append(one(zq, frame))
    return terms[0] if len(terms) == 1 else ops.mean(ops.stack(terms))


def split_targets(model, y):
    """(first-step target, [targets of steps 2..K]) from one-step (B, *grid, C) or K-step (B, K, *grid, C) targets."""
    grid_rank = len(model.grid_shape)
    # TensorShape.rank is None after a TensorFlow retrace on a new target shape.
    rank = y.shape.rank if hasattr(y.shape, "rank") else len(y.shape)
    if rank is None:
        if model.target_steps == 1:
            return y, []
        raise ValueError(
            "targets of unknown rank: TensorFlow retraced the compiled step for targets of another shape; with "
            "K-step targets keep one target shape per compiled model (or call compile() again)"
        )
    if rank == grid_rank + 2:
        return y, []
    if rank != grid_rank + 3 or y.shape[1] != model.target_steps:
        raise ValueError(
            f"targets of shape {tuple(y.shape)} do not fit the model: expected (B, *{model.grid_shape}, "
            f"{model.num_fields}) or, with rollout_loss_steps={model.rollout_loss_steps} and "
            f"latent_consistency_steps={model.latent_consistency_steps}, "
            f"(B, {model.target_steps}, *{model.grid_shape}, {model.num_fields})"
        )
    return y[:, 0], [y[:, k] for k in range(1, model.target_steps)]


def rollout_term(model, forward, z_next, later, idx, coords_q, std, correction=0.0):
    """The forward term: the one-step MSE, averaged with the MSE of latent steps 2..K when targets are K-step.

    `correction` is added to every decoded step (a residual model's `start_correction`).
    """
    later = list(later)[: model.rollout_loss_steps - 1]
    if not later:
        return forward
    z, extra = z_next, []
    for target in later:
        z = model.step(z)
        target = ops.reshape(target, (ops.shape(target)[0], model.num_points, model.num_fields))
        if idx is not None:
            target = ops.take(target, idx, axis=1)
        extra.append(forward_error(model, model._decode(z, coords_q) + correction, target, std))
    later_mean = ops.mean(ops.stack(extra))
    model.rollout_loss_tracker.update_state(later_mean)
    return (forward + later_mean * len(later)) / (len(later) + 1)


def inverse_losses(model, inputs):
    """Inverse-encoding and inverse-decoding MSE on the full grid, as floats (for evaluation)."""
    _, std = model.field_stats()
    with inference_mode():
        fields, positions = input_fields(model, inputs)
        fields = ops.convert_to_tensor(fields, "float32")
        z = model.encode(fields, positions)
        z_next = model.step(z)
        inv_enc = _inverse_encoding(model, z, fields, positions, None, model.grid_coords, std)
        decoded = model._decode(z_next)
        if model.residual:
            decoded = decoded + model.start_correction(fields, z)
        inv_dec = latent_mse(model.encode_grid(decoded), z_next)
    return {"inv_enc_loss": float(ops.convert_to_numpy(inv_enc)),
            "inv_dec_loss": float(ops.convert_to_numpy(inv_dec))}
