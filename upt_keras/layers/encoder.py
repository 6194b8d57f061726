"""What the UPT model needs of an encoder."""

import keras


class Encoder(keras.layers.Layer):
    """Base class of UPT encoders: physical input -> latent tokens (B, T, latent_dim).

    An encoder sets these attributes in its constructor:
        num_channels: int, physical fields per input point (C).
        coord_dim: int, dimensions of the domain (d); the decoder's `coord_dim`.
        num_latent_tokens: int, T.
        latent_dim: int.
        token_positions: None, or a (T, d) float32 numpy array of where each latent
            token sits in the domain (the decoder's locality bias uses it).
    and one class attribute:
        input_kind: `"grid"` or `"points"`, how inputs are given:
        - `"grid"`: `call(fields)` with fields (B, *grid_shape, C) on the encoder's own
          regular grid (the encoder then also has `grid_shape`); positions are implied.
        - `"points"`: `call(fields, positions)` with fields (B, N, C) at positions
          (B, N, d) in [0, 1)^d, N free (points may differ per sample).
    `build(fields_shape, positions_shape=None)` creates the weights from shapes alone.
    To add an encoder: subclass this, set the attributes, implement `build`, `call` and
    `get_config`, register it with `keras.saving.register_keras_serializable`, and pass
    it to `UPT(encoder, approximator, decoder, grid_shape=...)` (`grid_shape`: the grid
    on which targets and full decodes live, needed when the input is not a grid).
    """

    input_kind = None

    @property
    def latent_shape(self):
        """(T, latent_dim): the shape of one sample's latent."""
        return (self.num_latent_tokens, self.latent_dim)

    def compute_output_shape(self, fields_shape, positions_shape=None):
        return (fields_shape[0], self.num_latent_tokens, self.latent_dim)


def split_inputs(inputs):
    """(fields, positions) of a model input: a field tensor, or `{"fields", "positions"}` (point clouds)."""
    return (inputs["fields"], inputs.get("positions")) if isinstance(inputs, dict) else (inputs, None)
