"""Multi-device data parallelism on the engines Keras already has.

`distribution_scope("data_parallel")` wraps model construction, `compile` and
`fit`:

- JAX: `keras.distribution.DataParallel` (one program over a 1D device mesh,
  weights replicated, every batch split along its first axis), installed with
  `keras.distribution.set_distribution` and restored on exit.
- TensorFlow: a `tf.distribute.MirroredStrategy` scope (one replica per device,
  gradients all-reduced). The model must be *created* inside the scope: Keras
  binds a TensorFlow model to the strategy that is active at construction.
- torch: Keras has no in-process multi-device engine for torch. Multi-GPU torch
  training runs one process per GPU under `torchrun` with
  `torch.nn.parallel.DistributedDataParallel`; see `docs/distributed.md` and
  `examples/train_ddp_torch.py`. The scope raises `DistributionUnavailableError`.

`kind=None` is a null context, so callers can always write
`with distribution_scope(cfg.training.distribution): ...`.
`check_batch_size` rejects batches that do not split evenly over the replicas,
and `scale_loss_for_replicas` is what a `compute_loss` override returns so that
a TensorFlow strategy sees the loss on Keras's terms.

Example:
>>> with distribution_scope("data_parallel") as dist:
...     model = UPT.from_sizes((64,), 1)
...     model.compile(optimizer="adam")
...     model.fit(u_t, u_next, batch_size=8 * replica_count(), shuffle=False)
"""

import contextlib

import keras

KINDS = ("data_parallel",)
DOC = "docs/distributed.md"
TORCH_EXAMPLE = "examples/train_ddp_torch.py"


class DistributionUnavailableError(RuntimeError):
    """The current Keras backend has no in-process engine for the requested distribution."""


def _torch_error():
    return DistributionUnavailableError(
        "distribution='data_parallel' is not available in-process on the torch backend: Keras has no "
        "multi-device engine for torch. Run one process per GPU with torchrun and wrap the model in "
        "torch.nn.parallel.DistributedDataParallel (see "
        f"{DOC} and {TORCH_EXAMPLE}), or use KERAS_BACKEND=jax / tensorflow with "
        "training.distribution=data_parallel, or set training.distribution=null."
    )


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"distribution must be None or one of {KINDS}, got {kind!r}")


def _pick(devices, available, what):
    """`devices` as a list: an int n takes the first n of `available`, a list is kept."""
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"asked for {devices} devices, {len(available)} {what} available: {available}")
        return list(available[:devices])
    devices = list(devices)
    if not devices:
        raise ValueError("devices must not be empty")
    return devices


def _jax_data_parallel(devices):
    if isinstance(devices, keras.distribution.DeviceMesh):
        return keras.distribution.DataParallel(device_mesh=devices)
    if devices is None:
        return keras.distribution.DataParallel()
    available = keras.distribution.list_devices()
    return keras.distribution.DataParallel(devices=_pick(devices, available, "devices"))


def _tf_devices(devices):
    import tensorflow as tf

    if devices is None or not isinstance(devices, int) or isinstance(devices, bool):
        return devices  # None: MirroredStrategy takes every GPU, or the CPU when there is none
    available = [d.name for d in tf.config.list_logical_devices("GPU")]
    what = "GPUs"
    if not available:
        available, what = [d.name for d in tf.config.list_logical_devices("CPU")], "logical CPUs"
    return _pick(devices, available, what)


@contextlib.contextmanager
def distribution_scope(kind, devices=None):
    """Runs the enclosed model construction, `compile` and `fit` data-parallel.

    Args:
        kind: None (a null context) or `"data_parallel"`.
        devices: None (every accelerator the backend sees; the CPU when there is
            none), an int n (the first n devices), or a list of device names
            (`"gpu:0"` on JAX, `"/gpu:0"` on TensorFlow). On JAX a 1D
            `keras.distribution.DeviceMesh` is accepted too.

    Yields:
        None for `kind=None`; the `keras.distribution.DataParallel` (JAX) or the
        `tf.distribute.MirroredStrategy` (TensorFlow) in effect.

    Raises:
        ValueError: an unknown `kind`, or more devices asked for than exist.
        DistributionUnavailableError: `"data_parallel"` on the torch backend
            (see `docs/distributed.md` for the torchrun route).

    The global batch (the `batch_size` given to `fit`) is split evenly over the
    replicas: make it divisible by `replica_count()`. Build the model inside the
    scope (on TensorFlow the strategy is bound at construction; on JAX the
    weights are laid out on the mesh when they are created).
    """
    if kind is None:
        yield None
        return
    _check_kind(kind)
    backend = keras.backend.backend()
    if backend == "jax":
        dist = _jax_data_parallel(devices)
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(dist)
        try:
            yield dist
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(_tf_devices(devices))
        with strategy.scope():
            yield strategy
    elif backend == "torch":
        raise _torch_error()
    else:
        raise DistributionUnavailableError(f"no data-parallel engine for the Keras backend {backend!r}")


def replica_count():
    """How many replicas the active distribution splits each batch over (1 outside any)."""
    backend = keras.backend.backend()
    if backend == "jax":
        dist = keras.distribution.distribution()
        return 1 if dist is None else int(dist.device_mesh.devices.size)
    if backend == "tensorflow":
        import tensorflow as tf

        return int(tf.distribute.get_strategy().num_replicas_in_sync)
    return 1


def scale_loss_for_replicas(loss):
    """`loss / replicas` inside a TensorFlow `tf.distribute` replica, `loss` otherwise.

    A `compute_loss` override must return this. Under `MirroredStrategy`, Keras
    runs `compute_loss` once per replica on that replica's share of the batch,
    multiplies the returned value by the replica count for the `loss` metric, and
    SUMS the replicas' gradients; Keras's own `compute_loss` divides by the
    replica count, so a loss that is a mean over the local batch must be divided
    too. Without it the reported `loss`/`val_loss` and the gradients are
    `replicas` times too large. JAX `DataParallel` runs one program on the global
    batch and torch has no in-process engine: no change there.
    """
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * (1.0 / replicas)


def check_batch_size(batch_size, num_examples=None, replicas=None):
    """Raises ValueError unless every batch splits evenly over the replicas.

    JAX `DataParallel` cannot shard a batch whose size the device count does not
    divide (it fails at that step, often the last, smaller batch of an epoch);
    `MirroredStrategy` fails when a replica gets no sample and weights uneven
    shares wrongly. Call it inside `distribution_scope` before `fit`.

    Args:
        batch_size: the global batch (`fit`'s `batch_size`).
        num_examples: samples per epoch; checks the last, partial batch too.
        replicas: default `replica_count()`.
    """
    replicas = replica_count() if replicas is None else int(replicas)
    batch_size = int(batch_size)
    if batch_size % replicas:
        raise ValueError(f"the global batch size {batch_size} must be divisible by the {replicas} replicas")
    if num_examples is not None:
        last = int(num_examples) % batch_size
        if last % replicas:
            raise ValueError(
                f"{num_examples} samples in batches of {batch_size} leave a last batch of {last}, which does not "
                f"split over {replicas} replicas; use a sample count whose remainder is divisible by {replicas} "
                "(or drop the last batch)"
            )
