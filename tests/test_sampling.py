"""Query sampling: distinct, exact Q, reproducible, and stratified coverage of the whole domain."""

import numpy as np
import pytest

from conftest import to_numpy
from upt_keras.objectives.sampling import QuerySampler, stratified_blocks


def draws(sampler, n):
    return [np.asarray(to_numpy(sampler.sample())) for _ in range(n)]


@pytest.mark.parametrize("strategy", ["uniform", "stratified"])
@pytest.mark.parametrize("grid_shape,q", [((256,), 100), ((64, 64), 2048), ((12, 20), 37), ((64, 64), 1000)])
def test_exact_q_distinct_in_range(strategy, grid_shape, q):
    sampler = QuerySampler(grid_shape, q, strategy, seed=0)
    for idx in draws(sampler, 3):
        assert idx.shape == (q,)
        assert len(np.unique(idx)) == q
        assert idx.min() >= 0 and idx.max() < np.prod(grid_shape)


@pytest.mark.parametrize("strategy", ["uniform", "stratified"])
def test_reproducible_and_changing_every_step(strategy):
    a = draws(QuerySampler((64,), 16, strategy, seed=7), 3)
    b = draws(QuerySampler((64,), 16, strategy, seed=7), 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(np.sort(a[0]), np.sort(a[1]))


@pytest.mark.parametrize("grid_shape,q", [((64, 64), 2048), ((48, 80), 333), ((256,), 100), ((7, 9), 63)])
def test_stratified_blocks_tile_the_domain_with_one_point_each(grid_shape, q):
    sampler = QuerySampler(grid_shape, q, "stratified", seed=0) if q < np.prod(grid_shape) else None
    starts, sizes = stratified_blocks(grid_shape, q)
    owner = -np.ones(grid_shape, int)
    for b, (st, sz) in enumerate(zip(starts, sizes)):
        region = tuple(slice(a, a + n) for a, n in zip(st, sz))
        assert (owner[region] == -1).all()  # disjoint
        owner[region] = b
    assert (owner >= 0).all()  # together they cover the whole domain
    assert sizes.prod(-1).min() >= 1
    if sampler is None:
        return
    for idx in draws(sampler, 3):  # exactly one query per block
        assert np.array_equal(np.sort(owner.reshape(-1)[idx]), np.arange(q))


@pytest.mark.parametrize("grid_shape,q,regions", [((64, 64), 2048, (4, 4)), ((64, 64), 1000, (4, 4)),
                                                   ((256,), 50, (8,)), ((48, 80), 333, (4, 4))])
def test_stratified_coverage_is_even(grid_shape, q, regions):
    """Every region gets close to its share, every draw (the seed's sampler starved half the domain)."""
    sampler = QuerySampler(grid_shape, q, "stratified", seed=1)
    region_size = [n // r for n, r in zip(grid_shape, regions)]
    expected = q / np.prod(regions)
    for idx in draws(sampler, 5):
        cell = np.stack(np.unravel_index(idx, grid_shape), -1) // np.array(region_size)
        counts = np.zeros(regions)
        np.add.at(counts, tuple(cell.T), 1)
        # compact Z-order blocks: each region is within a few blocks of its share (uniform
        # sampling misses by ~2-3 standard deviations, sqrt(expected), somewhere on most draws)
        assert np.abs(counts - expected).max() <= max(4, 0.25 * expected), counts


def test_uniform_coverage_is_unbiased_on_average():
    sampler = QuerySampler((32, 32), 256, "uniform", seed=3)
    hits = np.zeros(1024)
    for idx in draws(sampler, 40):
        hits[idx] += 1
    quadrant = hits.reshape(2, 16, 2, 16).sum((1, 3)) / (40 * 256)
    np.testing.assert_allclose(quadrant, 0.25, atol=0.03)


def test_disabled_and_full_q_use_every_point():
    assert QuerySampler((32,), None).sample() is None
    assert QuerySampler((32,), 32, "stratified").sample() is None
    assert not QuerySampler((8, 8), 64).enabled


def test_bad_q_and_strategy_errors():
    with pytest.raises(ValueError, match=r"num_queries must be in \[1, 64\] for grid \(8, 8\), got 65"):
        QuerySampler((8, 8), 65)
    with pytest.raises(ValueError, match="got -3"):
        QuerySampler((8, 8), -3)
    with pytest.raises(ValueError, match="strategy must be one of"):
        QuerySampler((8, 8), 4, "random")


def test_stratified_blocks_reject_impossible_counts():
    with pytest.raises(ValueError, match=r"grid \(4,\) into 5"):
        stratified_blocks((4,), 5)
