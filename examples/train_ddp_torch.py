"""Data-parallel UPT training with the torch backend: one process per GPU, torchrun + DistributedDataParallel.

Keras has no in-process multi-device engine for torch (`model.fit` uses one device). The route Keras documents for
torch ("Multi-GPU distributed training with PyTorch") is one process per GPU: the Keras model is a `torch.nn.Module`,
wrapped in `torch.nn.parallel.DistributedDataParallel` (DDP), trained by a plain torch loop over a `DataLoader` with a
`DistributedSampler`. This script does that for a UPT built from a project config:

    torchrun --standalone --nproc_per_node=4 examples/train_ddp_torch.py --config configs/train_burgers1d.yaml
    torchrun --standalone --nproc_per_node=2 examples/train_ddp_torch.py --cpu --epochs 1   # gloo on CPU, to check

- `training.batch_size` is the GLOBAL batch: each of the N processes takes `batch_size / N` pairs per step (it must
  divide), so a run on N GPUs takes the same optimizer steps on the same batches as `upt-keras train` on one device.
- The UPT's loss (query sampling, gated inverse losses, step counter) is computed inside the DDP-wrapped module, so
  every gradient is averaged over the processes; the query sampler's seed state and the step counter start equal on
  every process (DDP broadcasts all of rank 0's weights, trainable or not, when it wraps the model) and advance
  identically, so all processes sample the same query points at every step.
- The optimizer is the Keras optimizer of the config (schedule, weight decay, loss scaling under `training.amp`),
  applied to the all-reduced gradients exactly as Keras's own torch train step applies them.
- Rank 0 writes `config.yaml`, `history.csv` and `model.keras` (the last epoch, and `model_best.keras` on the best
  validation forward loss) into the run directory; evaluate with `upt-keras evaluate --model RUN_DIR/model.keras`.

Not covered (use `upt-keras train` on one device, or the JAX/TensorFlow data-parallel scope, for these): resuming an
interrupted run, early stopping, the time budget, TensorBoard, the test/rollout evaluation at the end, multi-node
launch options beyond what torchrun itself provides.
"""

import argparse
import csv
import math
import os
import sys
import time

from upt_keras.cli import add_train_arguments, train_overrides
from upt_keras.configs import DEFAULT_CONFIG


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)  # the same --config, --set, --run-dir and --epochs as `upt-keras train`
    parser.add_argument("--cpu", action="store_true",
                        help="run the processes on the CPU with the gloo backend (a check without GPUs)")
    args = parser.parse_args(argv)
    args.config = args.config or DEFAULT_CONFIG
    return args


def main(argv=None):
    args = parse_args(argv)
    if os.environ.get("KERAS_BACKEND", "torch") != "torch":
        sys.exit(f"this script needs KERAS_BACKEND=torch, got {os.environ['KERAS_BACKEND']}")
    if "LOCAL_RANK" not in os.environ:
        sys.exit("launch with torchrun, e.g.: torchrun --standalone --nproc_per_node=2 examples/train_ddp_torch.py")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world = int(os.environ["WORLD_SIZE"])
    # Both must be set before Keras is imported: Keras places every variable on KERAS_TORCH_DEVICE.
    os.environ["KERAS_BACKEND"] = "torch"
    os.environ["KERAS_TORCH_DEVICE"] = "cpu" if args.cpu else f"cuda:{local_rank}"

    import torch
    import torch.distributed as dist

    if args.cpu:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device visible; pass --cpu to run on the CPU")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl")
    try:
        return train(args, rank, world, device)
    finally:
        dist.destroy_process_group()


def training_loss_module(model):
    """The module DDP wraps: forward(u_t, u_next) -> the UPT's total training loss, as Keras's train step has it."""
    import torch

    class TrainingLoss(torch.nn.Module):
        def __init__(self, upt):
            super().__init__()
            self.upt = upt  # registers the Keras model (a torch.nn.Module), and with it all its parameters

        def forward(self, u_t, u_next):
            latents = self.upt(u_t, training=True)
            return self.upt.compute_loss(x=u_t, y=u_next, y_pred=latents, training=True)

    return TrainingLoss(model)


def check_in_sync(model, device):
    """Raises unless every process holds the same step counter and query-sampler seed state."""
    import torch
    import torch.distributed as dist

    state = torch.cat([model.objective.train_step_counter.value.reshape(1).long(),
                       model.objective.query_sampler.seed_generator.state.value.reshape(-1).long()]).to(device)
    low, high = state.clone(), state.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"processes out of step: counter and seed state range from {low.tolist()} to "
                           f"{high.tolist()}")


def train(args, rank, world, device):
    import torch
    import torch.distributed as dist

    import keras

    from upt_keras import InverseLossCurriculum
    from upt_keras.config import ConfigError, load_config, save_config
    from upt_keras.training import build_model, prepare_data

    overrides = train_overrides(args) + ["training.distribution=null"]  # this script IS the distribution
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    t = cfg.training
    if t.batch_size % world:
        sys.exit(f"training.batch_size={t.batch_size} (the global batch) must be divisible by {world} processes")
    local_batch = t.batch_size // world
    run_dir = os.path.abspath(args.run_dir or cfg.output.run_dir)

    # Rank 0 first: it may have to generate and cache the default data set.
    if rank != 0:
        dist.barrier()
    data = prepare_data(cfg, splits=("train", "val"), progress=rank == 0)
    if rank == 0:
        dist.barrier()

    train_pairs = data.train  # PairDataset: `pairs` (trajectory, start frame) and `trajectories` in memory

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return train_pairs.num_pairs

        def __getitem__(self, i):
            traj, t0 = train_pairs.pairs[i]
            frames = train_pairs.trajectories[traj]
            return frames[t0], frames[t0 + train_pairs.time_stride]

    # Every process draws the same permutation (seed + epoch) and takes every world-th pair of it: the k-th local
    # batches of all processes together are the k-th global batch of a one-process run. drop_last keeps every step
    # a full global batch, so the processes take the same number of steps.
    sampler = torch.utils.data.distributed.DistributedSampler(
        Pairs(), num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True)
    loader = torch.utils.data.DataLoader(Pairs(), batch_size=local_batch, sampler=sampler, drop_last=True)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        sys.exit(f"{train_pairs.num_pairs} training pairs make no full global batch of {t.batch_size}")

    # Same seed on every process: same initial weights and query-sampler seed (DDP also broadcasts rank 0's).
    model = build_model(cfg, data, steps_per_epoch=steps_per_epoch)  # compiled: model.optimizer is the config's
    ddp = torch.nn.parallel.DistributedDataParallel(
        training_loss_module(model), device_ids=None if device.type == "cpu" else [device.index])
    curriculum = None
    if t.use_inverse_losses:
        curriculum = InverseLossCurriculum(
            lambda_inv_enc=t.lambda_inv_enc, lambda_inv_dec=t.lambda_inv_dec,
            warmup_epochs=t.inverse_loss_warmup_epochs, ramp_epochs=t.ramp_epochs,
            max_weight=t.inverse_loss_max_weight)
        curriculum.set_model(model)

    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)
        save_config(cfg, os.path.join(run_dir, "config.yaml"))
        print(f"Keras {keras.__version__} (torch {torch.__version__}), {world} processes on {device.type}, "
              f"global batch {t.batch_size} = {world} x {local_batch}, {steps_per_epoch} steps per epoch")
    weights = model.trainable_weights
    history, best = [], math.inf
    for epoch in range(t.epochs):
        sampler.set_epoch(epoch)
        if curriculum is not None:
            curriculum.on_epoch_begin(epoch)
        model.train()  # as Keras's fit does (rank 0's evaluate() switches to eval mode)
        start, loss_sum = time.monotonic(), torch.zeros((), dtype=torch.float64, device=device)
        for u_t, u_next in loader:
            u_t, u_next = u_t.to(device, non_blocking=True), u_next.to(device, non_blocking=True)
            for w in weights:
                w.value.grad = None
            loss = ddp(u_t, u_next)  # the backward pass below averages the gradients over the processes
            model.optimizer.scale_loss(loss).backward()
            with torch.no_grad():
                model.optimizer.apply([w.value.grad for w in weights], weights)
            loss_sum += loss.detach().double()
        # this process's epoch means of the total and the forward loss, then their average over the processes
        means = torch.stack([loss_sum / steps_per_epoch,
                             torch.as_tensor(model.objective.trackers["forward"].result(), device=device).double()])
        dist.all_reduce(means)
        means /= world
        check_in_sync(model, device)
        row = {"epoch": epoch, "loss": float(means[0]), "forward_loss": float(means[1]),
               "seconds": round(time.monotonic() - start, 3)}
        for tracker in model.metrics:
            tracker.reset_state()
        if rank == 0:
            if data.val is not None:
                val = model.evaluate(data.val, verbose=0, return_dict=True)
                row["val_forward_loss"] = float(val["forward_loss"])
                for tracker in model.metrics:
                    tracker.reset_state()
                if row["val_forward_loss"] < best:
                    best = row["val_forward_loss"]
                    model.save(os.path.join(run_dir, "model_best.keras"))
            history.append(row)
            print(", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                  flush=True)
        dist.barrier()  # the other processes wait while rank 0 validates and saves

    if rank == 0:
        model.save(os.path.join(run_dir, "model.keras"))
        with open(os.path.join(run_dir, "history.csv"), "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        print(f"wrote {', '.join(sorted(os.listdir(run_dir)))} into {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
