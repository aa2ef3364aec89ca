"""Consented download of NVIDIA's released PartField checkpoint, with resume and verification.

Standard library only (urllib), so the Blender side can use it without extra packages.

Files in the target folder:
- ``model_objaverse.ckpt.part`` (+ ``.part.json``): an unfinished download, kept after a cancel
  or a dropped connection so the next attempt resumes with an HTTP Range request. The ``.part``
  name is never a checkpoint name: nothing here, in the preferences or in ``load_weights``
  callers looks for it (``installed_weights`` only knows the two final names).
- ``model_objaverse.ckpt``: appears only by an atomic rename after the size and SHA-256 checked out.
- ``model_objaverse.fp16.safetensors``: the compact weights-only copy made once after the
  download (written under a temporary folder, then renamed), which is what later loads read.

The released file's size and SHA-256 are pinned below (several independent public records give
the same values); ``sha256=`` / ``--sha256`` override the hash for mirrors and tests. Hashes or
sizes a server announces (``X-Linked-Etag`` / ``X-Linked-Size``) are never trusted as the
expected values: a size that disagrees only makes the download fail early.

Bounded work: every call has an overall attempt limit and time budget (a server that drops the
connection or ignores ``Range`` cannot keep it looping), free disk space is checked before any
byte is written, and an https URL is never followed to plain http.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .errors import Cancelled, PartFieldError

DEFAULT_HOST = "https://huggingface.co"
REPO_ID = "mikaelaangel/partfield-ckpt"
CHECKPOINT_FILENAME = "model_objaverse.ckpt"
COMPACT_FILENAME = "model_objaverse.fp16.safetensors"
PART_SUFFIX = ".part"
MODEL_PAGE_URL = f"{DEFAULT_HOST}/{REPO_ID}"
LICENSE_URL = "https://github.com/nv-tlabs/PartField/blob/main/LICENSE"
# The released model_objaverse.ckpt, as several independent public records give it.
EXPECTED_SHA256 = "463efc8a3afd3913142aa025e0125c00f16ef452b8de6a132ebe32bbe7877ee4"
EXPECTED_SIZE = 1_243_631_761
# `size="auto"`: the pinned size when the pinned hash (or no hash) is asked for, else unknown.
AUTO = "auto"
APPROX_SIZE_TEXT = "about 1.2 GB"
# Bounds of one download call (retries, total time) and the free space kept beyond the file.
MAX_ATTEMPTS = 50
TIME_BUDGET_S = 6 * 3600.0
FREE_SPACE_MARGIN = 64 << 20
# Room the compact fp16 copy needs next to the checkpoint, as a share of the checkpoint size.
COMPACT_SHARE = 0.5
# Environment override of the download URL (tests, mirrors, air-gapped proxies).
URL_ENV = "PARTFIELD_WEIGHTS_URL"

LICENSE_NAME = "NVIDIA License (non-commercial)"
LICENSE_TERMS = (
    "The released PartField weights are NVIDIA's, under the NVIDIA License (non-commercial).",
    "Use them only non-commercially, i.e. for research or evaluation; not in commercial work or products.",
    "Do not redistribute them: this add-on does not ship them, you download them yourself.",
    "Works derived from the weights fall under the same terms.",
    "They come with no warranty. This is a summary; the licence text governs:",
    LICENSE_URL,
)

# progress(stage, done, total): stage is "download", "hash" (re-reading a partial file before
# resuming), "verify" (hashing an already present file) or "convert"; total may be None.
ProgressFn = Callable[[str, int, Optional[int]], None]
CancelFn = Callable[[], bool]

_NET_ERRORS = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    socket.timeout,
    TimeoutError,
    ssl.SSLError,
)


class DownloadError(PartFieldError):
    """The download failed (network, server, size). A resumable ``.part`` may be kept."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or SHA-256; they were deleted."""


class DiskSpaceError(DownloadError):
    """Not enough free space for the download; nothing was written."""


@dataclass
class DownloadResult:
    path: Path
    sha256: str
    size: int
    resumed_from: int  # bytes already on disk when this call started (0 = fresh download)
    already_present: bool = False
    host_sha256: Optional[str] = None
    verified: bool = True  # False: no expected SHA-256 was given, only the size was checked


@dataclass
class FetchResult:
    checkpoint_path: Optional[Path]  # None when the original was removed after conversion
    compact_path: Optional[Path]  # None with convert=False
    sha256: str
    downloaded: bool  # False when everything was already in place
    verified: bool = True  # the checkpoint's SHA-256 was compared with an expected value

    @property
    def weights_path(self) -> Path:
        """The file to load: the compact copy when there is one."""
        return self.compact_path or self.checkpoint_path


def default_url() -> str:
    """The checkpoint URL: ``$PARTFIELD_WEIGHTS_URL`` when set, else the Hugging Face file."""
    return os.environ.get(URL_ENV) or checkpoint_url()


def checkpoint_url(host: str = DEFAULT_HOST) -> str:
    """URL of ``model_objaverse.ckpt`` on a Hugging Face-style ``host`` (a mirror, a test server)."""
    return f"{host.rstrip('/')}/{REPO_ID}/resolve/main/{CHECKPOINT_FILENAME}"


def part_path(final_path) -> Path:
    """The name an unfinished download of ``final_path`` lives under."""
    final_path = Path(final_path)
    return final_path.with_name(final_path.name + PART_SUFFIX)


def _sidecar_path(final_path) -> Path:
    return part_path(final_path).with_name(part_path(final_path).name + ".json")


def installed_weights(folder) -> Optional[Path]:
    """The released weights in ``folder``: the compact file, else the verified ``.ckpt``, else None.

    Only the two final names count; a ``.part`` file is never returned."""
    folder = Path(folder)
    for name in (COMPACT_FILENAME, CHECKPOINT_FILENAME):
        p = folder / name
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


def partial_download(folder) -> Optional[tuple]:
    """(path, bytes on disk) of an unfinished download in ``folder``, or None."""
    p = part_path(Path(folder) / CHECKPOINT_FILENAME)
    return (p, p.stat().st_size) if p.is_file() else None


def discard_partial(folder, filename: str = CHECKPOINT_FILENAME) -> bool:
    """Delete an unfinished download (``.part`` and its note). True if something was deleted."""
    return _discard(Path(folder) / filename)


def _discard(final_path) -> bool:
    removed = False
    for p in (part_path(final_path), _sidecar_path(final_path)):
        if p.exists():
            p.unlink()
            removed = True
    return removed


def manual_install_lines(folder) -> list:
    """What to tell a user who downloads the file by hand (offline Blender, no network)."""
    return [
        "Online access is off, so nothing is downloaded. To use NVIDIA's released PartField weights:",
        f"1. Read the non-commercial licence: {LICENSE_URL}",
        f"2. Download {CHECKPOINT_FILENAME} ({APPROX_SIZE_TEXT}) from {MODEL_PAGE_URL}",
        f"3. Place it, named exactly {CHECKPOINT_FILENAME}, in: {folder}",
        "   (or pick 'Custom file' as the model and browse to it anywhere).",
        "Or allow online access (Preferences > System > Network) and download it here, or on any",
        "machine run: python -m model_runtime fetch-weights --accept-license --to DIR",
    ]


def sha256_file(path, progress: Optional[ProgressFn] = None, cancel: Optional[CancelFn] = None,
                stage: str = "verify", hasher=None, chunk_size: int = 1 << 22):
    """Hash a file (returns the hashlib object so a resumed download can keep feeding it)."""
    h = hasher or hashlib.sha256()
    total = os.path.getsize(path)
    done = 0
    with open(path, "rb") as f:
        while True:
            if cancel is not None and cancel():
                raise Cancelled("cancelled while checking the downloaded file")
            block = f.read(chunk_size)
            if not block:
                break
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(stage, done, total)
    return h


class _RecordingRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does (never from https to plain http) and keeps the
    hash/size the host announces on them."""

    def __init__(self, record: dict):
        super().__init__()
        self.record = record

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme.lower()
        if old == "https" and new != "https":
            raise DownloadError(
                f"refused: the server redirected the https download to an insecure {new or 'unknown'} URL "
                f"({newurl[:200]})"
            )
        _note_host_headers(headers, self.record)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _note_host_headers(headers, record: dict) -> None:
    etag = (headers.get("X-Linked-Etag") or "").strip().strip('"').lower()
    if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        record["sha256"] = etag
    size = headers.get("X-Linked-Size")
    if size and size.strip().isdigit():
        record["size"] = int(size)


def _ssl_context() -> ssl.SSLContext:
    try:  # Blender and many venvs ship certifi; the system store is the fallback.
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except Exception:
        return ssl.create_default_context()


def _opener(record: dict, context: Optional[ssl.SSLContext] = None):
    return urllib.request.build_opener(
        _RecordingRedirectHandler(record), urllib.request.HTTPSHandler(context=context or _ssl_context())
    )


def _parse_content_range(value: Optional[str]):
    """'bytes 10-99/100' -> (10, 99, 100); 'bytes */100' -> (None, None, 100); total may be None."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    total_n = int(total) if total.strip().isdigit() else None
    if span.strip() == "*":
        return None, None, total_n
    first, _, last = span.partition("-")
    return int(first), int(last), total_n


def _read_sidecar(final_path) -> dict:
    try:
        return json.loads(_sidecar_path(final_path).read_text())
    except (OSError, ValueError):
        return {}


def _write_sidecar(final_path, data: dict) -> None:
    _sidecar_path(final_path).write_text(json.dumps(data))


def _fsync(path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def resolve_size(size, sha256: Optional[str]) -> Optional[int]:
    """The expected byte size: `size` itself, or for "auto" the pinned size of the released file
    when the pinned hash or no hash is asked for (a custom hash means another file)."""
    if size != AUTO:
        return None if size is None else int(size)
    if sha256 is None or sha256.lower() == EXPECTED_SHA256:
        return EXPECTED_SIZE
    return None


def _check_free_space(folder: Path, needed: int, what: str) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the write itself will report a full disk
    if free < needed + FREE_SPACE_MARGIN:
        raise DiskSpaceError(
            f"not enough free space in {folder} for {what}: {needed / 1e6:,.1f} MB needed "
            f"(+{FREE_SPACE_MARGIN / 1e6:.0f} MB margin), {free / 1e6:,.1f} MB free; nothing was written"
        )


def download_file(url: str, final_path, *, sha256: Optional[str] = EXPECTED_SHA256,
                  size=AUTO, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelFn] = None, retries: int = 5, timeout: float = 20.0,
                  backoff: float = 1.0, chunk_size: int = 1 << 18, max_attempts: int = MAX_ATTEMPTS,
                  time_budget: float = TIME_BUDGET_S, extra_space: int = 0,
                  ssl_context: Optional[ssl.SSLContext] = None) -> DownloadResult:
    """Download ``url`` to ``final_path`` via ``<final>.part``, resuming what is already there.

    Checks the size first (``size``; "auto" = the released file's pinned size when its hash or
    none is asked for; the server's Content-Length is compared before any byte is written), then
    the SHA-256 (``sha256``; None skips it and the result says ``verified=False``), then renames
    atomically. On a mismatch the bytes are deleted and ``ChecksumError`` is raised.
    ``cancel()`` returning True raises ``Cancelled`` and keeps the ``.part`` for a later resume
    (``discard_partial`` removes it). Network failures are retried ``retries`` times in a row
    (only an attempt that got further than any before resets the count), each retry resuming
    with ``Range``; a server that ignores ``Range`` (200 instead of 206) restarts from 0. However
    it fails, one call makes at most ``max_attempts`` requests and gives up after
    ``time_budget`` seconds. Free space for the rest of the file (+ ``extra_space``) is checked
    before writing. An existing ``final_path`` is checked (size, then hash) rather than
    downloaded again. ``ssl_context``: the TLS trust to use (default: certifi, else the system's)."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    want_sha = sha256.lower() if sha256 else None
    size = resolve_size(size, want_sha)
    part = part_path(final_path)
    record: dict = {}

    if final_path.exists():
        n = final_path.stat().st_size
        if size is not None and n != size:  # the size first: no need to hash a wrong file
            raise ChecksumError(
                f"{final_path} exists but does not match the expected file: it is {n:,} bytes, not {size:,}. Move it away "
                "(a partial or different file), then download again."
            )
        h = sha256_file(final_path, progress, cancel, stage="verify")
        got = h.hexdigest()
        if want_sha and got != want_sha:
            raise ChecksumError(
                f"{final_path} exists but does not match the expected file: its SHA-256 is {got}, not {want_sha}. "
                "Move it away, then download again."
            )
        return DownloadResult(final_path, got, n, resumed_from=n, already_present=True,
                              verified=want_sha is not None)

    # A partial file from another URL or for another expected hash is not ours to continue.
    note = _read_sidecar(final_path)
    if part.exists() and (note.get("url") != url or note.get("sha256") != want_sha):
        _discard(final_path)
        note = {}
    if not part.exists():
        note = {}
    if part.exists() and size is not None and part.stat().st_size > size:
        _discard(final_path)  # longer than the file can be: not worth hashing
        note = {}
    validator = note.get("etag")

    resumed_from = part.stat().st_size if part.exists() else 0
    if size is not None:
        _check_free_space(final_path.parent, size - resumed_from + extra_space, final_path.name)
    hasher = hashlib.sha256()
    if resumed_from:
        sha256_file(part, progress, cancel, stage="hash", hasher=hasher)
    offset = resumed_from
    total: Optional[int] = note.get("total")
    failures = attempts = 0
    furthest = offset
    deadline = time.monotonic() + time_budget
    opener = _opener(record, ssl_context)

    def fail_size(msg):
        _discard(final_path)
        raise ChecksumError(msg + " The partial download was deleted.")

    def give_up(why, exc=None):
        raise DownloadError(
            f"download failed: {why}; {offset:,} bytes are kept in {part} and the next attempt "
            "resumes from there"
        ) from exc

    while True:
        if cancel is not None and cancel():
            raise Cancelled(f"download cancelled; {offset} bytes kept in {part} for a later resume")
        if attempts >= max_attempts:
            give_up(f"{attempts} requests did not complete the file (limit {max_attempts})")
        if time.monotonic() > deadline:
            give_up(f"the time budget of {time_budget:.0f} s ran out")
        attempts += 1
        headers = {"User-Agent": "partfield-blender", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if validator and not validator.startswith("W/"):
                headers["If-Range"] = validator
        req = urllib.request.Request(url, headers=headers)
        try:
            try:
                resp = opener.open(req, timeout=timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and offset:
                    cr = _parse_content_range(exc.headers.get("Content-Range"))
                    exc.close()
                    if cr and cr[2] == offset:  # the partial file is already complete
                        total = offset
                        break
                    part.unlink(missing_ok=True)  # longer than the file: start again
                    offset, hasher, validator = 0, hashlib.sha256(), None
                    continue
                if exc.code in (408, 429) or exc.code >= 500:
                    raise  # transient: retried below
                raise DownloadError(f"the server refused the download: HTTP {exc.code} {exc.reason} ({url})") from None
            with resp:
                _note_host_headers(resp.headers, record)
                status = resp.status
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.strip().isdigit() else None
                if status == 206 and offset:
                    cr = _parse_content_range(resp.headers.get("Content-Range"))
                    if not cr or cr[0] != offset:
                        raise DownloadError(f"the server answered a resume with the wrong range ({resp.headers.get('Content-Range')})")
                    total = cr[2] if cr[2] is not None else (offset + length if length is not None else None)
                    mode = "ab"
                elif status == 200:
                    if offset:  # Range ignored: the body is the whole file, start over
                        offset, hasher = 0, hashlib.sha256()
                    total = length
                    mode = "wb"
                else:
                    raise DownloadError(f"unexpected HTTP status {status} from {url}")
                for expected, what in ((size, "expected"), (record.get("size"), "host-advertised")):
                    if expected is not None and total is not None and total != expected:
                        fail_size(f"The server offers {total:,} bytes but the {what} size is {expected:,}.")
                if total is not None and size is None:
                    _check_free_space(final_path.parent, total - offset + extra_space, final_path.name)
                etag = resp.headers.get("ETag")
                validator = etag if etag else None
                _write_sidecar(final_path, {"url": url, "sha256": want_sha, "etag": validator, "total": total})
                read = getattr(resp, "read1", resp.read)
                limit = size if size is not None else total
                with open(part, mode) as out:
                    if progress is not None:
                        progress("download", offset, total)
                    while True:
                        if cancel is not None and cancel():
                            out.flush()
                            raise Cancelled(
                                f"download cancelled; {offset} bytes kept in {part} for a later resume"
                            )
                        if time.monotonic() > deadline:
                            out.flush()
                            give_up(f"the time budget of {time_budget:.0f} s ran out")
                        block = read(chunk_size)
                        if not block:
                            break
                        out.write(block)
                        hasher.update(block)
                        offset += len(block)
                        if progress is not None:
                            progress("download", offset, total)
                        if limit is not None and offset > limit:
                            break  # more than the file can hold: refused below
            if limit is not None and offset > limit:
                fail_size(f"The server sent more than the {limit:,} bytes of the file.")
            if total is None or offset == total:
                break
            raise ConnectionError(f"connection closed after {offset} of {total} bytes")
        except _NET_ERRORS as exc:
            if offset > furthest:  # real progress: a fresh run of retries
                furthest, failures = offset, 0
            else:
                failures += 1
            if failures > retries:
                give_up(f"{retries} retries in a row made no progress ({exc})", exc)
            time.sleep(min(backoff * min(failures, 5), max(0.0, deadline - time.monotonic())))

    got = hasher.hexdigest()
    n = part.stat().st_size
    if size is not None and n != size:
        fail_size(f"Downloaded {n:,} bytes, expected {size:,}.")
    if size is None and total is None and want_sha is None:
        _discard(final_path)
        raise DownloadError(
            "the server did not say how long the file is and no SHA-256 was given, so there is no "
            "way to tell a complete download from a cut one; the bytes were deleted. Give --sha256 "
            "or --size."
        )
    if want_sha and got != want_sha:
        _discard(final_path)
        raise ChecksumError(
            f"The downloaded file's SHA-256 is {got}, expected {want_sha}; it was deleted. The file "
            "on the server is not the expected one (or was damaged on the way)."
        )
    _fsync(part)
    os.replace(part, final_path)
    _sidecar_path(final_path).unlink(missing_ok=True)
    return DownloadResult(final_path, got, n, resumed_from=resumed_from, host_sha256=record.get("sha256"),
                          verified=want_sha is not None)


def read_safetensors_metadata(path) -> dict:
    """The ``__metadata__`` of a .safetensors file, read with the standard library."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            return {}
        n = int.from_bytes(head, "little")
        if n <= 0 or n > 100_000_000:
            return {}
        try:
            return dict(json.loads(f.read(n)).get("__metadata__") or {})
        except ValueError:
            return {}


def convert_to_compact(ckpt_path, compact_path=None, metadata: Optional[dict] = None,
                       progress: Optional[ProgressFn] = None) -> Path:
    """Write the compact fp16 safetensors copy of a checkpoint once and read it back.

    ``checkpoint.save_compact`` writes under a temporary name and renames, so the compact name
    never holds a half-written file; a copy that does not read back with the expected keys is
    deleted."""
    import torch

    from . import checkpoint

    ckpt_path = Path(ckpt_path)
    compact_path = Path(compact_path) if compact_path else ckpt_path.with_name(COMPACT_FILENAME)
    if progress is not None:
        progress("convert", 0, 2)
    loaded = checkpoint.load_weights(ckpt_path)
    meta = dict(loaded.metadata or {})
    meta.update(metadata or {})
    if progress is not None:
        progress("convert", 1, 2)
    checkpoint.save_compact(compact_path, loaded.state_dict, loaded.config, meta, dtype=torch.float16)
    try:
        back = checkpoint.load_weights(compact_path)
    except PartFieldError:
        compact_path.unlink(missing_ok=True)
        raise
    dead = getattr(checkpoint, "DEAD_PREFIXES", ())
    want = {k for k in loaded.state_dict if not k.startswith(dead)}
    if set(back.state_dict) != want:
        compact_path.unlink(missing_ok=True)
        raise PartFieldError(f"the compact copy of {ckpt_path.name} did not read back with the same weights; it was deleted")
    if progress is not None:
        progress("convert", 2, 2)
    return compact_path


def fetch_weights(folder, *, url: Optional[str] = None, sha256: Optional[str] = EXPECTED_SHA256,
                  size=AUTO, convert: bool = True,
                  keep_original: bool = True, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelFn] = None, **download_kwargs) -> FetchResult:
    """Download (or resume, or find) the released checkpoint in ``folder``, verify it, and make
    the compact fp16 copy once. The caller must have the user's licence consent."""
    folder = Path(folder)
    url = url or default_url()
    want_sha = sha256.lower() if sha256 else None
    ckpt = folder / CHECKPOINT_FILENAME
    compact = folder / COMPACT_FILENAME

    if convert and compact.is_file():
        meta = read_safetensors_metadata(compact)
        if want_sha is None or meta.get("source_sha256") == want_sha:
            if not keep_original and ckpt.exists():
                ckpt.unlink()
            return FetchResult(ckpt if ckpt.exists() else None, compact,
                               meta.get("source_sha256", ""), downloaded=False,
                               verified=want_sha is not None)

    expected = resolve_size(size, want_sha)
    if convert and expected is not None:
        download_kwargs.setdefault("extra_space", int(expected * COMPACT_SHARE))
    res = download_file(url, ckpt, sha256=want_sha, size=expected, progress=progress, cancel=cancel,
                        **download_kwargs)
    compact_out = None
    if convert:
        if cancel is not None and cancel():
            raise Cancelled("cancelled before converting; the verified checkpoint is kept")
        compact_out = convert_to_compact(ckpt, compact, metadata={
            "source": url, "source_file": CHECKPOINT_FILENAME, "source_sha256": res.sha256,
            "source_verified": res.verified, "licence": LICENSE_NAME, "licence_url": LICENSE_URL,
        }, progress=progress)
        if not keep_original:
            ckpt.unlink()
    return FetchResult(ckpt if ckpt.exists() else None, compact_out, res.sha256,
                       downloaded=not res.already_present, verified=res.verified)
