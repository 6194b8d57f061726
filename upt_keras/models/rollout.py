"""Rollouts of a `UPT`: many steps from one input, in latent space (encode once) or in physical space."""

import numpy as np

from keras import ops

from upt_keras.backend import inference_mode
from upt_keras.layers.anypoint_decoder import output_coords
from upt_keras.layers.encoder import split_inputs


def decode_steps_wanted(num_steps, decode_steps=None):
    """The 1-based steps to decode (default all of `num_steps`); a `ValueError` names what is out of range."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    wanted = set(range(1, num_steps + 1) if decode_steps is None else decode_steps)
    if not wanted or min(wanted) < 1 or max(wanted) > num_steps:
        raise ValueError(f"decode_steps must lie in [1, {num_steps}], got {sorted(wanted)}")
    return wanted


def rollout(model, inputs, num_steps, mode="latent", coords=None, decode_steps=None):
    """`num_steps` steps of `model` from `inputs` (what `UPT.call` takes), as numpy (B, K, *grid, C), or (B, K, Q, C)
    at `coords` (a dict input's `"coords"` (B, Q, d) are used as `coords`).

    `mode="latent"`: encode once, step `num_steps` times, decode only the `decode_steps` (1-based, default all); a
    residual model adds `u_0 - decode(z_0)` to each. `"physical"`: decode the full grid and re-encode after every step.
    """
    if mode not in ("latent", "physical"):
        raise ValueError(f"rollout mode must be 'latent' or 'physical', got {mode!r}")
    wanted = decode_steps_wanted(num_steps, decode_steps)
    fields, positions = split_inputs(inputs)
    coords = output_coords(inputs, coords)
    frames = []
    with inference_mode():  # no autograd graph across the steps
        z = model.encode(ops.convert_to_tensor(fields, "float32"), positions)
        base = (model.start_correction(fields, z, coords, positions=positions)
                if model.residual and mode == "latent" else 0.0)
        for k in range(1, num_steps + 1):
            z_next = model.step(z)
            if mode == "physical":
                if k in wanted and coords is not None:
                    frames.append(model.predict_from_latents(fields, z, z_next, coords, positions=positions))
                fields = model.predict_from_latents(fields, z, z_next, positions=positions)
                frames += [fields] if k in wanted and coords is None else []
                z_next, positions = model.encode_grid(fields), None  # from here on the fields are on the grid
            elif k in wanted:
                frames.append(model.decode(z_next, coords) + base)
            z = z_next
    return np.stack([ops.convert_to_numpy(f) for f in frames], axis=1)
