"""`python -m model_runtime fetch-weights --accept-license --to DIR`: download NVIDIA's released
PartField checkpoint (resumable, verified), then make the compact fp16 copy once."""
import sys
import time

from .. import weights_download as wd

NAME = "fetch-weights"


def add_parser(subparsers, help_line):
    p = subparsers.add_parser(NAME, help=help_line, description=__doc__)
    p.add_argument("--accept-license", action="store_true",
                   help="confirm you accept NVIDIA's non-commercial licence for these weights "
                        "(without it the terms are printed and nothing is downloaded)")
    p.add_argument("--to", metavar="DIR", help="folder to put the weights in (created if missing)")
    p.add_argument("--url", default=None,
                   help=f"where to download from (default: ${wd.URL_ENV} or {wd.checkpoint_url()})")
    p.add_argument("--sha256", default=wd.EXPECTED_SHA256, metavar="HEX",
                   help="expected SHA-256 of the .ckpt (default: the released file's, "
                        f"{wd.EXPECTED_SHA256[:12]}...; 'none' skips the check and the file is "
                        "reported as not verified)")
    p.add_argument("--size", type=int, default=None, metavar="BYTES",
                   help=f"expected size in bytes (default: {wd.EXPECTED_SIZE:,}, the released file's, "
                        "unless another --sha256 is given)")
    p.add_argument("--no-convert", action="store_true",
                   help="keep only the verified .ckpt; skip the compact fp16 copy")
    p.add_argument("--remove-original", action="store_true",
                   help="delete the 1.2 GB .ckpt after the compact copy is written")
    p.add_argument("--restart", action="store_true",
                   help="discard an unfinished download instead of resuming it")
    p.add_argument("--retries", type=int, default=5, help="network retries in a row without progress (default 5)")
    p.add_argument("--max-attempts", type=int, default=wd.MAX_ATTEMPTS,
                   help=f"requests in all before giving up (default {wd.MAX_ATTEMPTS})")
    p.add_argument("--time-budget", type=float, default=wd.TIME_BUDGET_S / 60, metavar="MINUTES",
                   help=f"give up after this many minutes (default {wd.TIME_BUDGET_S / 60:.0f})")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)
    return p


def print_license(stream=None):
    stream = stream if stream is not None else sys.stderr  # looked up now, not at import
    print("PartField's released weights are licensed by NVIDIA, not by this project:", file=stream)
    for line in wd.LICENSE_TERMS:
        print(f"  {line}", file=stream)


class _Progress:
    """One status line on stderr, rewritten at most a few times a second."""

    def __init__(self, stream=None):
        # sys.stderr is looked up now, not at import: it may have been replaced since
        # (a test's capture, a GUI's redirect) and the old stream closed.
        self.stream, self.last, self.stage = stream if stream is not None else sys.stderr, 0.0, None

    def __call__(self, stage, done, total):
        now = time.monotonic()
        final = total is not None and done >= total
        if stage == self.stage and now - self.last < 0.5 and not final:
            return
        self.stage, self.last = stage, now
        label = {"download": "downloading", "hash": "checking the partial file",
                 "verify": "checking", "convert": "converting"}.get(stage, stage)
        if stage == "convert":
            text = f"{label} to {wd.COMPACT_FILENAME} ({done}/{total})"
        elif total:
            text = f"{label} {done / 1e6:8.1f} / {total / 1e6:.1f} MB ({100 * done / total:5.1f}%)"
        else:
            text = f"{label} {done / 1e6:8.1f} MB"
        end = "\n" if final or not self.stream.isatty() else "\r"
        print(text, end=end, file=self.stream, flush=True)


def run(args) -> int:
    if not args.accept_license:
        print_license()
        print("\nRe-run with --accept-license to confirm you accept these terms and download "
              f"{wd.CHECKPOINT_FILENAME} ({wd.APPROX_SIZE_TEXT}).", file=sys.stderr)
        return 2
    if not args.to:
        print("error: --to DIR is required (the folder to put the weights in)", file=sys.stderr)
        return 2
    if args.restart:
        wd.discard_partial(args.to)
    sha = args.sha256
    if not sha or sha.lower() == "none":
        print("warning: no SHA-256 given, the file's content will not be verified", file=sys.stderr)
        sha = None
    elif len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
        print("error: --sha256 must be 64 hexadecimal digits or 'none'", file=sys.stderr)
        return 2
    size = wd.AUTO if args.size is None else args.size
    if args.retries < 0 or args.max_attempts < 1 or not args.time_budget > 0 or (args.size is not None and args.size < 1):
        print("error: --retries >= 0, --max-attempts >= 1, --time-budget > 0 and --size >= 1 are required",
              file=sys.stderr)
        return 2
    result = wd.fetch_weights(
        args.to, url=args.url, sha256=sha, size=size, convert=not args.no_convert,
        keep_original=not args.remove_original, progress=None if args.quiet else _Progress(),
        retries=args.retries, max_attempts=args.max_attempts, time_budget=args.time_budget * 60,
    )
    where = "downloaded" if result.downloaded else "already present"
    if result.verified:
        print(f"{wd.CHECKPOINT_FILENAME}: {where} and verified (SHA-256 {result.sha256})")
    else:
        expected = wd.resolve_size(size, sha)
        checked = f"size {expected:,} bytes checked" if expected is not None else "size as the server sent it"
        print(f"{wd.CHECKPOINT_FILENAME}: {where}, NOT verified: no SHA-256 was given ({checked}; "
              f"its SHA-256 is {result.sha256 or 'unknown'})")
    if result.checkpoint_path:
        print(f"checkpoint: {result.checkpoint_path}")
    if result.compact_path:
        print(f"compact:    {result.compact_path}")
    print(f"load with:  --checkpoint {result.weights_path}")
    return 0
