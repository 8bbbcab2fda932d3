"""Predict labels (or regression scores) for texts with an export folder written by export.py.

    python predict.py --model exported/sst2_0.5 --text "a gripping film" --text "flat and tedious"
    python predict.py --model exported/sst2_0.5 --input reviews.csv --column review --output predictions.tsv
    python predict.py --model exported/mrpc --input pairs.tsv --column first --pair_column second --format tflite

Writes a TSV with one row per input: the text (and its pair), the label and its probability (regression: the
score). Inputs are CSV, TSV or JSON lines, by their extension, with a header naming the columns. The format
defaults to the float one the export's card timed fastest.
"""

import argparse
import csv
import os
import sys

from deploy.formats import FORMATS
from gated_bert import progress
from gated_bert.cli import add_bool_flag, add_verbose_flag, quiet_start
from gated_bert.files import atomic_path
from gated_bert.logs import setup_console_logging
from tasks import GlueFormatError


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--model", required=True, help="an export folder (export.py's --output_dir)")
    parser.add_argument("--text", action="append", help="a text to predict (repeat for more)")
    parser.add_argument("--text_pair", action="append", help="the second text of a pair, one per --text")
    parser.add_argument("--input", help="a CSV, TSV or JSON-lines file of texts (instead of --text)")
    parser.add_argument("--column", help="--input's column holding the texts [text]", default="text")
    parser.add_argument("--pair_column", help="--input's column holding the second texts of pairs [none]")
    parser.add_argument("--output", help="write the predictions TSV here (must not exist, see --overwrite) [stdout]")
    add_bool_flag(parser, "overwrite", "replace an existing --output")
    parser.add_argument("--format", choices=FORMATS, help="which exported model to run [the fastest float one]")
    parser.add_argument("--batch_size", type=int, default=32, help="rows per batch [32]")
    add_verbose_flag(parser)
    return parser


def read_inputs(args):
    """`(texts, pairs or None)` from --text/--text_pair or --input; errors name the bad input."""
    from tasks.custom import read_columns

    if bool(args.text) == bool(args.input):
        raise ValueError("give the texts either with --text (repeatable) or with --input FILE, not both or neither")
    if args.text:
        if args.text_pair and len(args.text_pair) != len(args.text):
            raise ValueError(f"{len(args.text_pair)} --text_pair for {len(args.text)} --text; give one pair per text")
        return args.text, args.text_pair
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"--input {args.input} not found")
    columns = [args.column] + ([args.pair_column] if args.pair_column else [])
    values, _ = read_columns(args.input, columns, flags="--column and --pair_column")
    return values[0], values[1] if args.pair_column else None


def write_predictions(handle, texts, pairs, predictions):
    writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
    writer.writerow(["text", *(["text_pair"] if pairs is not None else []), "label", "score"])
    for index, text in enumerate(texts):
        label = predictions.labels[index]
        writer.writerow([text, *([pairs[index]] if pairs is not None else []),
                         f"{label:.6g}" if isinstance(label, float) else label, f"{predictions.scores[index]:.6f}"])


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    from deploy.formats import FormatUnavailableError
    from deploy.predict import ExportFolderError, check_pairs, predict, read_card

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)
    progress.set_verbosity(args.verbose)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
        if args.output and os.path.exists(args.output) and not args.overwrite:
            raise ValueError(f"--output {args.output} exists; choose another file or pass --overwrite to replace it")
        card = read_card(args.model)  # before reading a large input
        texts, pairs = read_inputs(args)
        check_pairs(args.model, card, pairs is not None)
        quiet_start()
        predictions = predict(args.model, texts, pairs, batch_size=args.batch_size, fmt=args.format)
    except (ExportFolderError, FormatUnavailableError, GlueFormatError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.output:  # written whole or not at all
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            write_predictions(handle, texts, pairs, predictions)
    else:
        write_predictions(sys.stdout, texts, pairs, predictions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
