"""``gperc convert DIR OUT``: convert a `transformers` Perceiver folder (``save_pretrained``, safetensors)
into a gperc model folder (a thin shell over `gperc_core.api.convert.convert`)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``convert`` command."""
    parser = subparsers.add_parser(
        "convert", help="convert a transformers Perceiver folder into a gperc model folder",
        description="Convert a Hugging Face transformers Perceiver (a save_pretrained folder with safetensors "
                    "weights) into a gperc model folder (config.json + model.safetensors) with the same logits; "
                    "fine-tune it with 'gperc train TASK --init OUT'.")
    parser.add_argument("source", metavar="DIR", help="transformers model folder (config.json + model.safetensors)")
    parser.add_argument("out", metavar="OUT", help="gperc model folder to write")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, metavar="N",
                        help="image size H [W] of a Fourier image model (default: the config's image_size)")
    parser.add_argument("--force", action="store_true", help="overwrite a model already in OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert with `gperc_core.api.convert.convert` and print where the model is; returns 0."""
    from gperc_core.api.convert import convert
    from gperc_core.errors import ConfigError

    size = args.image_size
    if size is not None and len(size) not in (1, 2):
        raise ConfigError(f"--image-size: expected H or H W, got {size}")
    image_size = None if size is None else (size[0] if len(size) == 1 else (size[0], size[1]))
    result = convert(args.source, args.out, image_size=image_size, overwrite=args.force)
    config = result["config"]
    print(f"model folder: {result['out']}")
    print(f"parameters:   {result['parameters']:,}")
    print(f"input:        {config.input_type} [m<={config.input_len}, {config.input_dim}]  "
          f"output: {'latents' if config.encoder_only else config.num_classes}")
    return 0
