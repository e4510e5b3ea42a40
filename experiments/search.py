"""Image search on an export: the images of a folder (or of an .npz) nearest each query
image by cosine similarity of their representations, read through the SavedModel's
serving signature as any app would.

python -m experiments.search --encoder_path=runs/simclr/export --index=photos/ --query=cat.jpg --query=dog.png
python -m experiments.search --encoder_path=runs/simclr/export --index=mnist.npz --index_split=test --query=digit.png

Writes neighbours.png (a row per query: the query, then its nearest images titled with their
cosine similarities) into --output_dir and prints each query's neighbours. The index is cached
(by default as index.npz in --output_dir) and rebuilt when the export or the images change.
"""

from __future__ import annotations

import pathlib

from absl import flags

from contrastive_tf.plots import plot_neighbours
from contrastive_tf.search import INDEX_FILE, NEIGHBOURS_FIGURE, NPZ_SPLITS, ExportedEncoder, cached_index, read_images

from . import cli


def define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string(
        "encoder_path",
        "runs/simclr/export",
        "The export directory (a SavedModel) a pretraining run wrote.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "index",
        None,
        "What to search: an image folder (every image under it, at any depth) or a Keras-layout .npz.",
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "index_split",
        "train",
        NPZ_SPLITS,
        "Which images of an .npz --index are searched: x_train or x_test (a folder is read whole).",
        flag_values=flag_values,
    )
    flags.DEFINE_multi_string("query", None, "An image file to search for", flag_values=flag_values)
    flags.DEFINE_integer("k", 10, "Nearest images shown per query.", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_string(
        "output_dir",
        "runs/search",
        f"Where {NEIGHBOURS_FIGURE} (and by default the index) go.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "cache_file",
        None,
        f"The index cache (default: {INDEX_FILE} in --output_dir); rebuilt when the export or the images change.",
        flag_values=flag_values,
    )
    flags.mark_flags_as_required(["index", "query"], flag_values=flag_values)


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    encoder = ExportedEncoder(FLAGS.encoder_path)
    queries = read_images(FLAGS.query, encoder.image_shape)
    output_dir = pathlib.Path(FLAGS.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    index = cached_index(encoder, FLAGS.index, FLAGS.cache_file or output_dir / INDEX_FILE, FLAGS.index_split)
    indices, similarities = index.query(encoder(queries), k=FLAGS.k)
    captions = index.captions(indices)
    figure = output_dir / NEIGHBOURS_FIGURE
    plot_neighbours(queries, index.images(indices), similarities, captions, FLAGS.query, figure)
    for query, row, names in zip(FLAGS.query, similarities, captions):
        print(f"{query}:")
        for similarity, name in zip(row, names):
            print(f"  {similarity:.3f}  {name}")
    print(f"searched {len(index)} images of {index.origin}; figure: {figure}")


if __name__ == "__main__":
    cli.run(main, define_flags)
