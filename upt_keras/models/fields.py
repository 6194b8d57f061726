"""Fields read where the model needs them: the start `u_t` of a residual prediction at any points."""

from keras import ops

from upt_keras.layers import grid_coordinates, interpolate_from_points, interpolate_on_grid


def fields_at(fields, grid_shape, coords=None, idx=None, positions=None, neighbours=12, periodic=False):
    """`fields` read at `coords` ((Q, d) or (B, Q, d); None: the whole grid, as (B, *grid, C)), float32.

    Without `positions` the fields are on the grid `grid_shape` ((B, *grid, C) or (B, N, C)): read at the flat grid
    indices `idx` when `coords` are grid points, else interpolated (`interpolate_on_grid`). With `positions`
    (B, N, d) the fields (B, N, C) are at those points and read by `interpolate_from_points` over `neighbours`
    points (exact at the points; offsets wrapped round the unit cube when `periodic`).
    """
    grid_shape = tuple(int(n) for n in grid_shape)
    batch, num_fields = ops.shape(fields)[0], fields.shape[-1]
    on_grid = (batch,) + grid_shape + (num_fields,)
    if positions is not None:
        at = grid_coordinates(grid_shape) if coords is None else coords
        start = interpolate_from_points(fields, positions, at, neighbours, periodic)
        return ops.reshape(start, on_grid) if coords is None else start
    grid = ops.reshape(ops.cast(fields, "float32"), on_grid)
    if idx is not None:
        return ops.take(ops.reshape(grid, (batch, -1, num_fields)), idx, axis=1)
    return grid if coords is None else interpolate_on_grid(grid, coords)
