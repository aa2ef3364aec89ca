"""`python -m model_runtime <command>`: one module per subcommand, each exposing
`add_parser(subparsers)` which registers itself and sets `func(args) -> int`."""
import argparse
import importlib
import os
import sys

DESCRIPTION = ("PartField: split 3D meshes into parts with a feedforward part feature field "
               "(no Blender needed). Run 'COMMAND --help' for a command's options and examples.")

# (module name under model_runtime.cli, help line). Add a line per new subcommand.
SUBCOMMANDS = [
    ("info", "describe a checkpoint file"),
    ("convert", "convert a checkpoint to a compact fp16 safetensors file"),
    ("segment", "segment a mesh file into parts"),
    ("fetch_weights", "download the released PartField checkpoint (licence consent required)"),
    ("train", "train our own PartField model"),
    ("evaluate", "measure segmentation quality (mIoU) against ground truth"),
]


def build_parser() -> argparse.ArgumentParser:
    prog = "partfield" if os.path.basename(sys.argv[0]) == "partfield" else "python -m model_runtime"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_line in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # subcommand not present in this build
            raise
        module.add_parser(sub, help_line)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from ..errors import PartFieldError

    try:
        return int(args.func(args) or 0)
    except PartFieldError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder, a vanished file: no traceback
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: {_one_line(exc.strerror or exc)}{where}", file=sys.stderr)
        return 1
    except MemoryError:
        print("error: out of memory (try a smaller input, fewer points, or --max-memory-mb)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(msg) -> str:
    """An error message on one line (a message may quote bytes with newlines from a file)."""
    return " ".join(str(msg).split())
