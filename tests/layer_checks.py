"""One contract check for every public layer: `run_layer_test`.

For a layer class, constructor arguments and example inputs it checks, in order:
1. build from shapes alone: `layer.build(*shapes)` creates every weight before any call;
2. an eager call gives the expected output shape, finite values;
3. a symbolic call (Keras tensors with an unknown batch size) gives the same shape with batch None;
4. `get_config` round trip: the config is JSON-serialisable, `from_config` rebuilds the layer, and with the same
   weights it computes the same output; a `.keras` save/load of a model holding it does too;
5. a train step: inside a functional model, one SGD step on an MSE moves every trainable weight;
6. mixed precision: under `mixed_float16` the variables stay float32, the output has the expected dtype and is
   finite.
"""

import json

import numpy as np

import keras
from keras import ops


def _to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _call(layer, inputs, call_kwargs):
    return layer(*inputs, **call_kwargs)


def run_layer_test(cls, init_kwargs, inputs, call_kwargs=None, expected_output_shape=None,
                   mixed_output_dtype="float16", tmp_path=None):
    call_kwargs = dict(call_kwargs or {})
    inputs = [np.asarray(x, "float32") for x in inputs]

    # 1. build from shapes
    keras.utils.set_random_seed(0)
    layer = cls(**init_kwargs)
    layer.build(*[x.shape for x in inputs])
    assert layer.built
    assert layer.trainable_weights, f"{cls.__name__} built no trainable weight from shapes"
    num_weights = len(layer.weights)

    # 2. eager call
    out = _to_numpy(_call(layer, inputs, call_kwargs))
    assert len(layer.weights) == num_weights, "calling the layer created weights that build() did not"
    if expected_output_shape is not None:
        assert out.shape == tuple(expected_output_shape), (out.shape, expected_output_shape)
    assert np.isfinite(out).all()

    # 3. symbolic call, batch unknown
    symbolic = [keras.Input(shape=x.shape[1:], batch_size=None) for x in inputs]
    sym_out = _call(layer, symbolic, call_kwargs)
    assert tuple(sym_out.shape) == (None,) + out.shape[1:], (sym_out.shape, out.shape)

    # 4. config round trip, and a .keras file
    config = layer.get_config()
    json.dumps(config)
    clone = cls.from_config(config)
    clone.build(*[x.shape for x in inputs])
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_to_numpy(_call(clone, inputs, call_kwargs)), out, rtol=1e-5, atol=1e-5)
    model = keras.Model(symbolic, sym_out)
    if tmp_path is not None:
        path = str(tmp_path / f"{cls.__name__}.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        np.testing.assert_allclose(_to_numpy(reloaded(inputs)), out, rtol=1e-5, atol=1e-5)

    # 5. one train step moves every trainable weight
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=False)
    before = [_to_numpy(w).copy() for w in layer.trainable_weights]
    target = np.random.default_rng(0).normal(size=out.shape).astype("float32")
    model.train_on_batch(inputs if len(inputs) > 1 else inputs[0], target)
    frozen = [w.path for w, b in zip(layer.trainable_weights, before) if np.array_equal(_to_numpy(w), b)]
    assert not frozen, f"no gradient reached {frozen}"

    # 6. mixed precision
    mixed = cls(**init_kwargs, dtype="mixed_float16")
    mixed_out = _call(mixed, inputs, call_kwargs)
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in mixed.weights)
    assert keras.backend.standardize_dtype(mixed_out.dtype) == mixed_output_dtype, mixed_out.dtype
    assert np.isfinite(_to_numpy(ops.cast(mixed_out, "float32"))).all()
    return out
