"""labkit's command line: ``python -m labkit COMMAND --help``."""
from __future__ import annotations

import argparse
import sys


def _cmd_info(args) -> int:
    from labkit import env

    env.setup(profile=args.profile)
    return 0


def _cmd_data(args) -> int:
    from labkit import data

    index = data.oxflower17_index(args.data_dir, partition=args.partition)
    print(f"{len(index)} images in {index.attrs['data_dir']}; split: {index.attrs['split_name']}")
    print(index.groupby("split").size().to_string())
    return 0


def _cmd_refresh_notebooks(args) -> int:
    from labkit import nbtools

    paths = args.notebooks or nbtools.lab_notebooks()
    for path in paths:
        print(f"executing {path} (profile {args.profile}) ...", flush=True)
        nbtools.execute(path, profile=args.profile)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, device and the active profile")
    info.add_argument("--profile", help="gpu, cpu or smoke (default: $LABKIT_PROFILE or detected)")
    info.set_defaults(func=_cmd_info)

    dat = sub.add_parser("data", help="fetch, verify and extract OxFlower17; print the split sizes")
    dat.add_argument("--data-dir", help="data directory (default: $LABKIT_DATA_DIR or the repo's data/)")
    dat.add_argument("--partition", type=int, default=1, choices=(1, 2, 3))
    dat.set_defaults(func=_cmd_data)

    ref = sub.add_parser("refresh-notebooks",
                         help="maintainers: execute lab notebooks and keep only checked outputs")
    ref.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.ipynb")
    ref.add_argument("--profile", default="smoke")
    ref.set_defaults(func=_cmd_refresh_notebooks)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from labkit.data import DataError

    try:
        return args.func(args)
    except (DataError, ValueError) as err:
        print(f"labkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
