"""Query sampling: which Q of the N grid points the decoder evaluates in a training step."""

import numpy as np

import keras
from keras import ops

PACKAGE = "upt_keras"
STRATEGIES = ("uniform", "stratified")


def stratified_blocks(grid_shape, num_blocks):
    """Cuts a grid into `num_blocks` disjoint rectangular blocks that cover it.

    Recursive bisection: the blocks of a region are split in two halves and its
    longest axis is cut in the same proportion. Blocks are compact
    and near-equal in size for any grid and any count (not only powers of two). Returns
    `(starts, sizes)`, int arrays of shape (num_blocks, ndim).
    """
    grid_shape = tuple(int(n) for n in grid_shape)
    if not 1 <= num_blocks <= int(np.prod(grid_shape)):
        raise ValueError(f"cannot cut grid {grid_shape} into {num_blocks} non-empty blocks")
    starts, sizes = [], []
    stack = [(np.zeros(len(grid_shape), int), np.array(grid_shape), int(num_blocks))]
    while stack:
        start, size, count = stack.pop()
        if count == 1:
            starts.append(start)
            sizes.append(size)
            continue
        axis = int(np.argmax(size))  # >= 2 points long, since the region holds >= count >= 2 points
        other = int(np.prod(size)) // size[axis]
        left = count // 2
        cut = min(max(int(round(size[axis] * left / count)), 1), size[axis] - 1)
        points_a, points_b = cut * other, (size[axis] - cut) * other
        # each side keeps at least one point per block
        left = min(max(left, count - points_b), points_a, count - 1)
        size_a, size_b, start_b = size.copy(), size.copy(), start.copy()
        size_a[axis], size_b[axis], start_b[axis] = cut, size[axis] - cut, start[axis] + cut
        stack.append((start_b, size_b, count - left))
        stack.append((start, size_a, left))
    return np.array(starts), np.array(sizes)


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuerySampler(keras.layers.Layer):
    """Draws Q distinct grid points per training step (the same points for the whole batch).

    - `uniform`: Q distinct points uniformly at random.
    - `stratified`: the grid is cut into Q compact rectangular blocks that
      together cover the whole domain (`stratified_blocks`), and one point is
      drawn uniformly inside each block: exactly Q points, one per block, no
      duplicates, every region of the domain gets its share on every draw.

    Randomness comes from a `keras.random.SeedGenerator` owned by this layer, so
    runs are reproducible and the indices change every step on every backend,
    inside compiled steps too.

    Args:
        grid_shape: tuple of ints.
        num_queries: int or None. None, or Q equal to the number of grid points,
            means "use every point" (`sample()` returns None).
        strategy: `"uniform"` or `"stratified"`.
        seed: int or None.

    Example:
    >>> sampler = QuerySampler((64, 64), num_queries=2048, strategy="stratified", seed=0)
    >>> sampler.sample().shape
    (2048,)
    """

    def __init__(self, grid_shape, num_queries=None, strategy="uniform", seed=None, **kwargs):
        super().__init__(**kwargs)
        self.grid_shape = tuple(int(n) for n in grid_shape)
        self.num_points = int(np.prod(self.grid_shape))
        if strategy not in STRATEGIES:
            raise ValueError(f"query sampling strategy must be one of {STRATEGIES}, got {strategy!r}")
        if num_queries is not None and not 0 < int(num_queries) <= self.num_points:
            raise ValueError(
                f"num_queries must be in [1, {self.num_points}] for grid {self.grid_shape}, got {num_queries}"
            )
        self.num_queries = None if num_queries is None else int(num_queries)
        self.strategy, self.seed = strategy, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.built = True  # no weights to build; unbuilt, it would make Keras re-trace the model every train_on_batch
        if self.enabled and strategy == "stratified":
            starts, sizes = stratified_blocks(self.grid_shape, self.num_queries)
            self._starts, self._sizes = starts.astype("float32"), sizes.astype("float32")
            strides = np.cumprod((self.grid_shape[1:] + (1,))[::-1])[::-1]
            self._strides = strides.astype("int32")  # row-major flat index of a grid point

    @property
    def enabled(self):
        return self.num_queries is not None and self.num_queries < self.num_points

    def sample(self, num_points=None):
        """Returns int32 indices (Q,) into the flattened grid, or None when every point is used. With `num_points`
        (the N points of a point cloud's targets) Q of those N, uniformly (None when Q >= N)."""
        if num_points is not None:
            if self.num_queries is None or self.num_queries >= num_points:
                return None
            if self.strategy != "uniform":
                raise ValueError(f"query sampling strategy {self.strategy!r} cuts the grid into blocks; the points "
                                 "of a point cloud are sampled 'uniform'")
            return self._uniform(num_points)
        if not self.enabled:
            return None
        if self.strategy == "uniform":
            return self._uniform(self.num_points)
        ndim = len(self.grid_shape)
        u = keras.random.uniform((self.num_queries, ndim), seed=self.seed_generator)
        sizes = ops.convert_to_tensor(self._sizes)
        offset = ops.minimum(ops.floor(u * sizes), sizes - 1.0)  # one point inside each block
        point = ops.cast(ops.convert_to_tensor(self._starts) + offset, "int32")  # (Q, ndim)
        return ops.sum(point * ops.convert_to_tensor(self._strides), axis=-1)

    def _uniform(self, num_points):
        scores = keras.random.uniform((num_points,), seed=self.seed_generator)
        return ops.cast(ops.top_k(scores, self.num_queries, sorted=False)[1], "int32")

    # The seed generator's state is saved with the model, so that a resumed or reloaded model goes on drawing new
    # query sets instead of repeating the ones it drew from its first step on.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store["seed_state"] = np.asarray(ops.convert_to_numpy(self.seed_generator.state)).astype("int64")

    def load_own_variables(self, store):
        state = store["seed_state"] if "seed_state" in store.keys() else None
        own = {k: store[k] for k in store.keys() if k != "seed_state"}
        super().load_own_variables(own)
        if state is not None:
            target = self.seed_generator.state
            target.assign(np.asarray(state).astype(keras.backend.standardize_dtype(target.dtype)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_shape": list(self.grid_shape),
                "num_queries": self.num_queries,
                "strategy": self.strategy,
                "seed": self.seed,
            }
        )
        return config
