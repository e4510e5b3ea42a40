"""Vision Transformers (Dosovitskiy et al. 2021) as MoCo v3 builds them (facebookresearch/
moco-v3 `vits.py`, `VisionTransformerMoCo`): patches projected by a strided conv, a [CLS]
token, fixed 2D sine-cosine positions, pre-norm transformer blocks, images in [0, 1] ->
representation h [B, D].

MoCo v3 found that a frozen random patch projection keeps training stable
(`--stop-grad-conv1`); `frozen_patch_projection` does that. The positions are fixed, so a
ViT takes one image size: the size it was built for.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from contrastive_tf.errors import UsageError

# Width D, depth and heads: DeiT's ViT-Tiny, and MoCo v3's ViT-Small and ViT-Base (both
# with 12 heads; `vits.py`, `vit_small`, `vit_base`).
VITS = {"vit_tiny": (192, 12, 3), "vit_small": (384, 12, 12), "vit_base": (768, 12, 12)}
VIT_POOLINGS = ("cls", "mean")
# The patch size a ViT takes by default: 16 px (the papers' ImageNet models) above this
# image size, 4 px at or below it (CIFAR-size images: 8 x 8 patches).
SMALL_IMAGE = 32


def default_patch_size(image_size: int) -> int:
    return 4 if image_size <= SMALL_IMAGE else 16


def sincos_positions(grid: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
    """MoCo v3's fixed 2D sine-cosine position embedding of a grid x grid of patches
    (`build_2d_sincos_position_embedding`): [grid^2, dim], each patch's row and column
    each encoded by dim/4 frequencies, sine and cosine."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (np.arange(quarter, dtype=np.float64) / quarter)
    token = np.arange(grid * grid)
    rows, columns = np.outer(token // grid, omega), np.outer(token % grid, omega)
    return np.concatenate([np.sin(rows), np.cos(rows), np.sin(columns), np.cos(columns)], axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class PatchTokens(layers.Layer):
    """Patch embeddings [B, N, D] -> tokens [B, 1 + N, D]: a learned [CLS] token (drawn
    from N(0, 1e-6^2), as MoCo v3) in front, and the fixed sine-cosine positions added
    (none for [CLS]).

    Args:
        grid: patches along each side (N = grid^2).
    """

    def __init__(self, grid: int, **kwargs):
        super().__init__(**kwargs)
        self.grid = grid

    def build(self, input_shape):
        dim = input_shape[-1]
        self.class_token = self.add_weight(
            shape=(1, 1, dim), initializer=keras.initializers.RandomNormal(stddev=1e-6), name="class_token"
        )
        self.positions = np.concatenate([np.zeros((1, dim), np.float32), sincos_positions(self.grid, dim)])[None]

    def call(self, patches):
        class_token = ops.cast(
            ops.broadcast_to(self.class_token, (ops.shape(patches)[0], 1, patches.shape[-1])), patches.dtype
        )
        return ops.concatenate([class_token, patches], axis=1) + ops.cast(self.positions, patches.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}


def _block(x, dim: int, heads: int, mlp_ratio: int, index: int):
    """A pre-norm transformer block: x + attention(LN(x)), then x + MLP(LN(x)), initialised
    as MoCo v3: each of q, k, v and the output projection uniform in +-sqrt(6 / 2D) (Xavier
    on a D x D matrix), the MLP's Dense layers Xavier, every bias 0; GELU (erf)."""
    bound = math.sqrt(3.0 / dim)
    attention = layers.MultiHeadAttention(
        heads,
        dim // heads,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        name=f"block_{index}_attention",
    )
    normed = layers.LayerNormalization(epsilon=1e-6, name=f"block_{index}_norm_1")(x)
    x = layers.Add()([x, attention(normed, normed)])
    normed = layers.LayerNormalization(epsilon=1e-6, name=f"block_{index}_norm_2")(x)
    hidden = layers.Dense(mlp_ratio * dim, activation="gelu", name=f"block_{index}_mlp_1")(normed)
    return layers.Add()([x, layers.Dense(dim, name=f"block_{index}_mlp_2")(hidden)])


def vision_transformer(
    name: str = "vit_small",
    input_shape: tuple[int, int, int] = (224, 224, 3),
    patch_size: int | None = None,
    pooling: str = "cls",
    frozen_patch_projection: bool = True,
    image_input: tuple | None = None,
) -> keras.Model:
    """The ViT called `name` (a key of `VITS`) for [0, 1] images of `input_shape`.

    Args:
        name: vit_tiny (D 192, 3 heads), vit_small (384, 12) or vit_base (768, 12); 12
            blocks each, MLPs 4 D wide.
        input_shape: (height, width, channels), square.
        patch_size: side of a patch in pixels, dividing the image; None: 4 up to 32 px
            images, else 16.
        pooling: h is the [CLS] token's output ("cls", the paper's) or the mean of the
            patch tokens' ("mean"), after the last LayerNorm.
        frozen_patch_projection: keep the patch projection at its random initialisation
            (MoCo v3's stability trick, `--stop-grad-conv1`).
        image_input: (inputs, x) to build on instead of a new input: the [0, 1] images and
            the tensor the ViT starts from (e.g. after `encoders`' input normalisation).

    Example:
        >>> vision_transformer("vit_tiny", (32, 32, 3)).output_shape
        (None, 192)
    """
    if name not in VITS:
        raise UsageError(f"unknown vision transformer {name!r}; choose one of {', '.join(VITS)}")
    if pooling not in VIT_POOLINGS:
        raise UsageError(f"unknown vit_pooling {pooling!r}; choose one of {', '.join(VIT_POOLINGS)}")
    height, width, channels = input_shape
    patch_size = patch_size or default_patch_size(height)
    if height != width or height % patch_size:
        raise UsageError(
            f"a {name} takes square images whose side the patch size divides; these are {height}x{width} px with "
            f"patch_size {patch_size}: choose a patch_size that divides {height} or another image_size"
        )
    dim, depth, heads = VITS[name]
    inputs, x = image_input or (keras.Input(input_shape, name="images"),) * 2
    bound = math.sqrt(6.0 / (channels * patch_size * patch_size + dim))
    projection = layers.Conv2D(
        dim,
        patch_size,
        strides=patch_size,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        trainable=not frozen_patch_projection,
        name="patch_projection",
    )
    grid = height // patch_size
    x = layers.Reshape((grid * grid, dim))(projection(x))
    x = PatchTokens(grid, name="tokens")(x)
    for index in range(depth):
        x = _block(x, dim, heads, 4, index)
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    pooled = x[:, 0] if pooling == "cls" else ops.mean(x[:, 1:], axis=1)
    outputs = layers.Identity(name="representation")(pooled)
    return keras.Model(inputs, outputs, name=f"{name}_p{patch_size}_{pooling}")
