"""A plain-PyTorch twin of `upt_keras.UPT.from_sizes`, used as the speed/memory baseline.

Same layers, widths, initialisers, Fourier features and losses as the Keras
model, written the way one would write it directly in torch (torch.nn,
`F.scaled_dot_product_attention`, a Python `if` for the inverse-loss frequency):

- encoder: 3-point conv stem (GELU) -> conv patchify (kernel = stride = patch)
  -> + Linear(Fourier features of patch centres) -> self-attention blocks ->
  perceiver pooling (learned queries cross-attend to the patch tokens) -> LN -> Linear;
- approximator: Linear in -> DiT adaLN blocks (qk-norm) conditioned on an
  embedding of dt -> LN -> Linear out, residual `z + f(z, dt)`;
- decoder: Fourier features of the query coordinates -> 2-layer MLP ->
  cross-attention blocks to the latent tokens -> LN -> one Linear head per field;
- losses: forward MSE at Q uniformly sampled points; on every k-th step the
  inverse-encoding MSE (decode z_t at the Q points) and the inverse-decoding MSE
  (re-encode the full-grid decode of z_{t+1} against detached z_{t+1}), where
  the full-grid decode of z_{t+1} also serves the forward term (decoded once).

`load_keras_weights` copies the weights of a built Keras `UPT` into this model,
so the two can be checked to compute the same function.

Run as a script to print the parameter counts of both for the B64 workload:

    python benchmarks/torch_reference.py
"""

import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


def _linear(in_dim, out_dim):
    """nn.Linear initialised like keras.layers.Dense (Glorot uniform, zero bias)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def grid_coordinates(grid_shape):
    """(N, d) float32 coordinates i / n per axis, row-major (as `upt_keras.layers.grid_coordinates`)."""
    axes = [np.arange(n, dtype=np.float64) / n for n in grid_shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1).astype("float32")


def fourier_features(coords, frequencies):
    """[x, sin(2 pi f x), cos(2 pi f x)] per axis and frequency (axis-major order)."""
    freqs = torch.tensor([2.0 * math.pi * f for f in frequencies], dtype=torch.float32, device=coords.device)
    x = coords.float()
    angles = (x.unsqueeze(-1) * freqs).flatten(-2)  # (..., d * F)
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1)
    freqs = torch.exp(-math.log(max_period) * exponents)
    args = t.float().unsqueeze(-1) * freqs * max_period ** 0.5
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm=False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q, self.k, self.v, self.out = (_linear(dim, dim) for _ in range(4))
        self.qk_norm = qk_norm
        if qk_norm:  # per-head LayerNorm over head_dim, parameters shared by the heads
            self.q_norm = nn.LayerNorm(self.head_dim, eps=LN_EPS)
            self.k_norm = nn.LayerNorm(self.head_dim, eps=LN_EPS)

    def _heads(self, t):
        return t.unflatten(-1, (self.num_heads, self.head_dim))  # (B, T, H, hd)

    def forward(self, x, context=None):
        context = x if context is None else context
        q, k, v = self._heads(self.q(x)), self._heads(self.k(context)), self._heads(self.v(context))
        if self.qk_norm:
            q, k = self.q_norm(q).to(v.dtype), self.k_norm(k).to(v.dtype)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.out(out.transpose(1, 2).flatten(-2))


class MLP(nn.Module):
    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1, self.fc2 = _linear(dim, hidden_dim), _linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, or cross-attention to a context."""

    def __init__(self, dim, num_heads, mlp_dim, cross_attention=False, qk_norm=False):
        super().__init__()
        self.cross_attention = cross_attention
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        if cross_attention:
            self.norm_ctx = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x, context=None):
        if self.cross_attention:
            x = x + self.attn(self.norm1(x), self.norm_ctx(context))
        else:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AdaLNBlock(nn.Module):
    """DiT block: shift/scale/gate of both branches from the condition vector."""

    def __init__(self, dim, num_heads, mlp_dim, qk_norm=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS, elementwise_affine=False)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.mlp = MLP(dim, mlp_dim)
        self.modulation = _linear(dim, 6 * dim)

    def forward(self, x, cond):
        mod = self.modulation(F.silu(cond)).unsqueeze(1)  # (B, 1, 6D)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(self.norm1(x) * (1.0 + scale1) + shift1)
        return x + gate2 * self.mlp(self.norm2(x) * (1.0 + scale2) + shift2)


class GridEncoder(nn.Module):
    def __init__(self, grid_shape, num_channels, patch_size, dim, depth, num_heads, mlp_ratio,
                 num_latent_tokens, latent_dim, pooling, frequencies):
        super().__init__()
        self.grid_shape, self.dim, self.pooling = tuple(grid_shape), dim, pooling
        self.num_latent_tokens = num_latent_tokens
        ndim = len(self.grid_shape)
        conv = nn.Conv1d if ndim == 1 else nn.Conv2d
        self.stem = conv(num_channels, dim // 2, 3, padding=1)
        self.patchify = conv(dim // 2, dim, patch_size, stride=patch_size)
        for layer in (self.stem, self.patchify):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        patch_grid = tuple(n // patch_size for n in self.grid_shape)
        centres = grid_coordinates(patch_grid) + (patch_size - 1) / (2.0 * np.array(self.grid_shape))
        self.register_buffer("pos_features", fourier_features(torch.from_numpy(centres.astype("float32")), frequencies),
                             persistent=False)
        self.pos_proj = _linear(self.pos_features.shape[-1], dim)
        mlp_dim = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(TransformerBlock(dim, num_heads, mlp_dim) for _ in range(depth))
        if pooling == "perceiver":
            self.latent_queries = nn.Parameter(torch.empty(num_latent_tokens, dim))
            nn.init.trunc_normal_(self.latent_queries, std=0.02, a=-0.04, b=0.04)
            self.perceiver = TransformerBlock(dim, num_heads, mlp_dim, cross_attention=True)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.out_proj = _linear(dim, latent_dim)

    def forward(self, fields):  # (B, *grid, C) channels-last, like the Keras model
        x = self.patchify(F.gelu(self.stem(torch.movedim(fields, -1, 1))))  # (B, dim, *patch_grid)
        x = x.flatten(2).transpose(1, 2)  # (B, P, dim), row-major patches
        x = x + self.pos_proj(self.pos_features.to(x.dtype))
        for block in self.blocks:
            x = block(x)
        batch = x.shape[0]
        if self.pooling == "perceiver":
            queries = self.latent_queries.to(x.dtype).unsqueeze(0).expand(batch, -1, -1)
            x = self.perceiver(queries, x)  # (B, T, dim)
        else:
            x = x.reshape(batch, self.num_latent_tokens, -1, self.dim).mean(2)
        return self.out_proj(self.norm(x))


class Approximator(nn.Module):
    def __init__(self, latent_dim, width, depth, num_heads, mlp_ratio, qk_norm=True):
        super().__init__()
        self.width = width
        self.in_proj = _linear(latent_dim, width)
        self.cond_mlp = nn.ModuleList([_linear(width, width), _linear(width, width)])
        self.blocks = nn.ModuleList(
            AdaLNBlock(width, num_heads, int(width * mlp_ratio), qk_norm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.out_proj = _linear(width, latent_dim)

    def forward(self, z, dt):
        dt = torch.as_tensor(dt, dtype=torch.float32, device=z.device).reshape(-1).expand(z.shape[0])
        cond = self.cond_mlp[1](F.silu(self.cond_mlp[0](timestep_embedding(dt, self.width))))
        x = self.in_proj(z)
        for block in self.blocks:
            x = block(x, cond)
        return z + self.out_proj(self.norm(x)).to(z.dtype)


class AnyPointDecoder(nn.Module):
    def __init__(self, num_fields, coord_dim, latent_dim, width, depth, num_heads, mlp_dim, frequencies):
        super().__init__()
        self.frequencies = list(frequencies)
        feat_dim = coord_dim * (2 * len(self.frequencies) + 1)
        self.query_mlp = nn.ModuleList([_linear(feat_dim, width), _linear(width, width)])
        self.latent_proj = _linear(latent_dim, width)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, num_heads, mlp_dim, cross_attention=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.heads = nn.ModuleList(_linear(width, 1) for _ in range(num_fields))

    def forward(self, latent, coords):  # coords (Q, d) shared by the batch, or (B, Q, d)
        if coords.dim() == 2:
            coords = coords.unsqueeze(0).expand(latent.shape[0], -1, -1)
        x = fourier_features(coords, self.frequencies).to(latent.dtype)
        x = self.query_mlp[1](F.gelu(self.query_mlp[0](x)))
        context = self.latent_proj(latent)
        for block in self.blocks:
            x = block(x, context)
        x = self.norm(x)
        return torch.cat([head(x) for head in self.heads], dim=-1)  # (B, Q, num_fields)


class ReferenceUPT(nn.Module):
    """The UPT of `upt_keras.UPT.from_sizes` in plain torch, with its training losses.

    Takes the same size keywords as `UPT.from_sizes` and the training keywords
    of `UPT` that matter for a training step (uniform query sampling only).
    """

    def __init__(self, grid_shape, num_fields=1, patch_size=4, encoder_dim=64, encoder_depth=1, encoder_heads=4,
                 num_latent_tokens=32, latent_dim=64, pooling="perceiver", approximator_width=128,
                 approximator_depth=4, approximator_heads=4, mlp_ratio=4, decoder_width=128, decoder_depth=2,
                 decoder_heads=4, decoder_mlp_dim=256, frequencies=(1, 2, 4, 8), dt=1.0, use_inverse_losses=False,
                 lambda_inv_enc=0.01, lambda_inv_dec=0.01, inverse_loss_frequency=1, num_queries=None, seed=None,
                 encoder="grid", approximator_zero_init=False, decoder_locality=False, approximator_locality=False,
                 decoder_readout="linear", decoder_patch_readout=False, decoder_patch_overlap=False, **unused_sizes):
        super().__init__()
        # sizes of parts the twin does not have are accepted only at their defaults (point-cloud sizes are unused)
        if (encoder != "grid" or approximator_zero_init or decoder_locality or approximator_locality
                or decoder_readout != "linear" or decoder_patch_readout or decoder_patch_overlap):
            raise NotImplementedError("the plain-torch twin has a grid encoder, no zero-init approximator, no "
                                      "locality bias and a linear readout (no patch readout)")
        unknown = set(unused_sizes) - {"num_supernodes", "supernodes", "supernode_radius", "supernode_neighbours"}
        if unknown:
            raise TypeError(f"unknown size(s): {', '.join(sorted(unknown))}")
        self.grid_shape, self.num_fields, self.dt = tuple(grid_shape), num_fields, float(dt)
        self.encoder = GridEncoder(self.grid_shape, num_fields, patch_size, encoder_dim, encoder_depth,
                                   encoder_heads, mlp_ratio, num_latent_tokens, latent_dim, pooling, frequencies)
        self.approximator = Approximator(latent_dim, approximator_width, approximator_depth, approximator_heads,
                                         mlp_ratio)
        self.decoder = AnyPointDecoder(num_fields, len(self.grid_shape), latent_dim, decoder_width, decoder_depth,
                                       decoder_heads, decoder_mlp_dim, frequencies)
        self.register_buffer("grid_coords", torch.from_numpy(grid_coordinates(self.grid_shape)), persistent=False)
        self.num_points = self.grid_coords.shape[0]
        self.use_inverse_losses = bool(use_inverse_losses)
        self.lambda_inv_enc, self.lambda_inv_dec = float(lambda_inv_enc), float(lambda_inv_dec)
        self.inverse_loss_frequency = int(inverse_loss_frequency)
        self.num_queries = num_queries if num_queries is not None and num_queries < self.num_points else None
        self.generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        self.step_count = 0  # optimizer steps taken, drives the inverse-loss frequency

    # Fields are used unnormalised (mean 0, std 1), as in the benchmark's Keras model.
    def encode(self, fields):
        return self.encoder(fields)

    def step(self, z):
        return self.approximator(z, self.dt)

    def decode(self, z, coords=None):
        full_grid = coords is None
        out = self.decoder(z, self.grid_coords if full_grid else coords).float()
        return out.reshape((out.shape[0],) + self.grid_shape + (self.num_fields,)) if full_grid else out

    def forward(self, fields, coords=None):
        return self.decode(self.step(self.encode(fields)), coords)

    def inverse_on(self, step):
        return (self.use_inverse_losses and step % self.inverse_loss_frequency == 0
                and self.lambda_inv_enc + self.lambda_inv_dec > 0)

    def training_loss(self, u_t, u_next, step):
        """Returns (total loss, {"forward", "inv_enc", "inv_dec"}) for optimizer step `step`."""
        batch = u_t.shape[0]
        z = self.encode(u_t)
        z_next = self.step(z)
        u_t, u_next = u_t.reshape(batch, self.num_points, -1), u_next.reshape(batch, self.num_points, -1)
        coords, idx = self.grid_coords, None
        if self.num_queries is not None:  # Q distinct points, the same for the whole batch
            idx = torch.randperm(self.num_points, generator=self.generator)[: self.num_queries].to(coords.device)
            coords_q, u_t_q, u_next_q = coords[idx], u_t[:, idx], u_next[:, idx]
        else:
            coords_q, u_t_q, u_next_q = coords, u_t, u_next
        zero = torch.zeros((), device=u_t.device)
        if not self.inverse_on(step):
            forward = F.mse_loss(self.decode(z_next, coords_q), u_next_q.float())
            return forward, {"forward": forward, "inv_enc": zero, "inv_dec": zero}
        u_next_pred = self.decode(z_next, coords)  # full grid, once: forward term and re-encoding
        pred_q = u_next_pred if idx is None else u_next_pred[:, idx]
        forward = F.mse_loss(pred_q, u_next_q.float())
        inv_enc = F.mse_loss(self.decode(z, coords_q), u_t_q.float())
        reencoded = self.encode(u_next_pred.reshape((batch,) + self.grid_shape + (self.num_fields,)))
        inv_dec = F.mse_loss(reencoded.float(), z_next.detach().float())
        total = forward + self.lambda_inv_enc * inv_enc + self.lambda_inv_dec * inv_dec
        return total, {"forward": forward, "inv_enc": inv_enc, "inv_dec": inv_dec}

    def train_step(self, u_t, u_next, optimizer, scaler=None, autocast_dtype=None):
        """One optimizer step; returns (inverse terms computed?, loss as float).

        `autocast_dtype` (e.g. torch.float16 on CUDA) runs the forward under
        autocast, with `scaler` (a torch.amp.GradScaler) scaling the loss.
        """
        on = self.inverse_on(self.step_count)
        optimizer.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            loss, _ = self.training_loss(u_t, u_next, self.step_count)
        else:
            with torch.autocast(device_type=u_t.device.type, dtype=autocast_dtype):
                loss, _ = self.training_loss(u_t, u_next, self.step_count)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        self.step_count += 1
        return on, float(loss.detach())


def count_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def make_optimizer(model, learning_rate=1e-4):
    """Adam with the Keras defaults (its epsilon is 1e-7, torch's 1e-8)."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-7)


_INDEXED = {"block": "blocks", "cond": "cond_mlp", "query": "query_mlp", "head": "heads"}


def _torch_name(keras_path):
    """`upt/decoder/block_0/attn/q/kernel` -> `decoder.blocks.0.attn.q.weight`."""
    parts = []
    for part in keras_path.split("/")[1:]:  # drop the model's own name
        match = re.fullmatch(r"([a-z]+)_(\d+)", part)
        if match and match.group(1) in _INDEXED:
            parts += [_INDEXED[match.group(1)], match.group(2)]
        else:
            parts.append({"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(part, part))
    return ".".join(parts)


def load_keras_weights(reference, keras_model):
    """Copies every trainable weight of a built Keras `UPT` into `reference` (same sizes)."""
    import keras

    params = dict(reference.named_parameters())
    seen = set()
    for variable in keras_model.trainable_weights:
        name = _torch_name(variable.path)
        if name not in params:
            raise KeyError(f"no torch parameter {name!r} for Keras weight {variable.path!r}")
        value = torch.from_numpy(np.array(keras.ops.convert_to_numpy(variable), dtype="float32"))
        if value.dim() == 2 and not name.endswith("latent_queries"):
            value = value.T  # Dense kernel (in, out) -> Linear weight (out, in)
        elif value.dim() >= 3:  # conv kernel (*k, in, out) -> (out, in, *k)
            value = value.permute(value.dim() - 1, value.dim() - 2, *range(value.dim() - 2))
        if tuple(value.shape) != tuple(params[name].shape):
            raise ValueError(f"{variable.path}: shape {tuple(value.shape)} != torch {tuple(params[name].shape)}")
        with torch.no_grad():
            params[name].copy_(value)
        seen.add(name)
    missing = set(params) - seen
    if missing:
        raise KeyError(f"torch parameters without a Keras weight: {sorted(missing)}")


def main():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from upt_keras import UPT
    from upt_keras.models.presets import preset

    sizes = preset("b64")  # the sizes of workload B64 (`workload_b64.py`)
    grid = tuple(sizes.pop("grid_shape"))
    torch.manual_seed(0)
    reference = ReferenceUPT(grid, **sizes)
    keras.utils.set_random_seed(0)
    model = UPT.from_sizes(grid, **sizes)
    model.encode(np.zeros((1,) + grid + (sizes["num_fields"],), "float32"))  # creates every weight
    n_keras = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    n_torch = count_params(reference)
    print(f"B64 trainable parameters: plain torch {n_torch:,}, Keras UPT ({keras.backend.backend()}) {n_keras:,}")
    assert n_torch == n_keras, "parameter counts differ"


if __name__ == "__main__":
    main()
