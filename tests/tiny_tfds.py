"""A TFDS builder small enough to prepare inside a test, offline: `tiny_images/fixed` (16 px
PNGs) and `tiny_images/photos` (JPEGs of 40-80 px, varied aspects). Its features are named
`picture` and `kind`, so that loading must find them from the feature dict. Once prepared
in a data_dir, TFDS reads it by name from there without this module."""

import numpy as np
import tensorflow_datasets as tfds

SPLITS = {"train": 24, "validation": 9, "unlabelled": 6}
CLASSES = ("a", "b", "c")


class TinyImages(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="fixed"), tfds.core.BuilderConfig(name="photos")]

    def _info(self) -> tfds.core.DatasetInfo:
        photos = self.builder_config.name == "photos"
        shape, encoding = ((None, None, 3), "jpeg") if photos else ((16, 16, 3), "png")
        image = tfds.features.Image(shape=shape, encoding_format=encoding)
        features = tfds.features.FeaturesDict({"picture": image, "kind": tfds.features.ClassLabel(names=CLASSES)})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(count, seed) for seed, (name, count) in enumerate(SPLITS.items())}

    def _generate_examples(self, count: int, seed: int):
        rng = np.random.default_rng(seed)
        for index in range(count):
            height, width = rng.integers(40, 80, 2) if self.builder_config.name == "photos" else (16, 16)
            yield index, {"picture": rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "kind": index % 3}


def prepare(data_dir: str, config: str = "fixed") -> str:
    """Prepares `tiny_images/config` in `data_dir` and returns its name."""
    name = f"tiny_images/{config}"
    tfds.builder(name, data_dir=data_dir).download_and_prepare()
    return name
