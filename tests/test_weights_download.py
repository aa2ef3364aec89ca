"""Consented download of the released checkpoint, against a real HTTP server on 127.0.0.1."""
import hashlib
import os
import subprocess
import sys

import pytest

from model_runtime import weights_download as wd
from model_runtime.cli import main as cli_main
from model_runtime.errors import Cancelled

from test_weights_download_server import WeightsServer


@pytest.fixture(scope="module")
def payload(reference_dir):
    """The stand-in checkpoint: a small file with the released Lightning structure."""
    return (reference_dir / "lightning_format_sample.ckpt").read_bytes()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_progress_reported_and_verified_file_renamed(tmp_path, payload):
    calls = []
    with WeightsServer(payload) as srv:
        res = wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=sha(payload),
                               progress=lambda *a: calls.append(a), chunk_size=1024)
    assert (tmp_path / wd.CHECKPOINT_FILENAME).read_bytes() == payload
    assert leftovers(tmp_path) == [wd.CHECKPOINT_FILENAME]  # no .part, no note
    assert res.sha256 == sha(payload) and res.size == len(payload) and res.resumed_from == 0
    downloads = [c for c in calls if c[0] == "download"]
    assert len(downloads) >= len(payload) // 1024  # one report per chunk at least
    done = [c[1] for c in downloads]
    assert done == sorted(done) and done[-1] == len(payload)
    assert all(c[2] == len(payload) for c in downloads)


def test_dropped_connection_resumes_with_range(tmp_path, payload):
    with WeightsServer(payload, drop_after=5000, drops=1) as srv:
        wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=sha(payload),
                         backoff=0, retries=2, chunk_size=1024)
        reqs = srv.file_requests()
    assert (tmp_path / wd.CHECKPOINT_FILENAME).read_bytes() == payload
    assert len(reqs) == 2
    assert "range" not in reqs[0]
    assert reqs[1]["range"] == "bytes=5000-"
    assert reqs[1]["if-range"] == '"v1"'
    assert leftovers(tmp_path) == [wd.CHECKPOINT_FILENAME]


def test_server_that_ignores_range_restarts_from_zero(tmp_path, payload):
    with WeightsServer(payload, support_range=False, drop_after=5000, drops=1) as srv:
        wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=sha(payload),
                         backoff=0, retries=2, chunk_size=1024)
        reqs = srv.file_requests()
    assert reqs[1]["range"] == "bytes=5000-"  # asked to resume, got the whole file (200)
    assert (tmp_path / wd.CHECKPOINT_FILENAME).read_bytes() == payload  # not prefix + whole


def test_wrong_checksum_rejected_and_deleted(tmp_path, payload):
    wrong = bytearray(payload)
    wrong[len(wrong) // 2] ^= 0xFF
    with WeightsServer(bytes(wrong)) as srv:
        # Via the redirect, which (like Hugging Face) announces the served file's own hash.
        with pytest.raises(wd.ChecksumError) as info:
            wd.download_file(srv.redirect_url, tmp_path / wd.CHECKPOINT_FILENAME,
                             sha256=sha(payload), chunk_size=1024)
    msg = str(info.value)
    assert sha(bytes(wrong)) in msg and sha(payload) in msg and "deleted" in msg
    # The redirecting server announced the served file's hash: it is never offered as the answer.
    assert "--sha256" not in msg and "host" not in msg
    assert leftovers(tmp_path) == []
    assert wd.installed_weights(tmp_path) is None


def test_wrong_size_rejected_before_download(tmp_path, payload):
    with WeightsServer(payload) as srv:
        with pytest.raises(wd.ChecksumError, match="size"):
            wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=None,
                             size=len(payload) + 1)
    assert leftovers(tmp_path) == []


def test_server_errors_exhaust_retries_leave_nothing_loadable(tmp_path, payload):
    with WeightsServer(payload, fail_status=503) as srv:
        with pytest.raises(wd.DownloadError, match="retries"):
            wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, retries=2, backoff=0)
        assert len(srv.file_requests()) == 3
    assert wd.installed_weights(tmp_path) is None
    with WeightsServer(payload, fail_status=404) as srv:
        with pytest.raises(wd.DownloadError, match="HTTP 404"):
            wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, retries=2, backoff=0)
        assert len(srv.file_requests()) == 1  # a 4xx is not retried


def test_cancel_leaves_nothing_under_final_name_then_resumes(tmp_path, payload):
    final = tmp_path / wd.CHECKPOINT_FILENAME
    seen = {"done": 0}

    def progress(stage, done, total):
        seen["done"] = done

    with WeightsServer(payload) as srv:
        with pytest.raises(Cancelled):
            wd.download_file(srv.url, final, sha256=sha(payload), progress=progress,
                             cancel=lambda: seen["done"] >= 3000, chunk_size=1024)
        assert not final.exists()
        assert wd.installed_weights(tmp_path) is None  # the .part is never offered as weights
        part, kept = wd.partial_download(tmp_path)
        assert part.name == wd.CHECKPOINT_FILENAME + ".part" and 3000 <= kept < len(payload)
        assert part.read_bytes() == payload[:kept]

        stages = []
        res = wd.download_file(srv.url, final, sha256=sha(payload), chunk_size=1024,
                               progress=lambda s, d, t: stages.append(s))
        reqs = srv.file_requests()
    assert reqs[-1]["range"] == f"bytes={kept}-"
    assert res.resumed_from == kept
    assert "hash" in stages  # the kept bytes were re-hashed, not trusted blindly
    assert final.read_bytes() == payload
    assert leftovers(tmp_path) == [wd.CHECKPOINT_FILENAME]


def test_partial_from_another_source_is_not_continued(tmp_path, payload):
    final = tmp_path / wd.CHECKPOINT_FILENAME
    with WeightsServer(b"x" * len(payload)) as other:
        with pytest.raises(Cancelled):
            wd.download_file(other.url, final, sha256=None, size=None, cancel=lambda: final.with_name(
                final.name + ".part").exists() and final.with_name(final.name + ".part").stat().st_size > 0,
                chunk_size=1024)
    assert wd.partial_download(tmp_path) is not None
    with WeightsServer(payload) as srv:
        wd.download_file(srv.url, final, sha256=sha(payload), chunk_size=1024)
        assert "range" not in srv.file_requests()[0]
    assert final.read_bytes() == payload


def test_present_file_is_verified_not_downloaded_again(tmp_path, payload):
    final = tmp_path / wd.CHECKPOINT_FILENAME
    with WeightsServer(payload) as srv:
        wd.download_file(srv.url, final, sha256=sha(payload))
        again = wd.download_file(srv.url, final, sha256=sha(payload))
        assert len(srv.file_requests()) == 1
    assert again.already_present
    with pytest.raises(wd.ChecksumError, match="exists but does not match"):
        wd.download_file("http://127.0.0.1:9/never", final, sha256="0" * 64)
    assert final.read_bytes() == payload  # a file we did not write this time is never deleted


def test_fetch_converts_once_to_compact_fp16(tmp_path, payload):
    pytest.importorskip("safetensors")
    import torch

    from model_runtime import checkpoint

    with WeightsServer(payload) as srv:
        res = wd.fetch_weights(tmp_path, url=srv.url, sha256=sha(payload))
        assert res.downloaded and res.compact_path.name == wd.COMPACT_FILENAME
        again = wd.fetch_weights(tmp_path, url=srv.url, sha256=sha(payload))
        assert not again.downloaded and len(srv.file_requests()) == 1  # nothing fetched twice
    assert wd.installed_weights(tmp_path) == tmp_path / wd.COMPACT_FILENAME
    compact = checkpoint.load_weights(res.compact_path)
    original = checkpoint.load_weights(tmp_path / wd.CHECKPOINT_FILENAME)
    assert compact.kind == "compact" and compact.metadata["source_sha256"] == sha(payload)
    assert compact.metadata["licence_url"] == wd.LICENSE_URL
    assert set(compact.state_dict) and set(compact.state_dict) <= set(original.state_dict)
    for k, t in compact.state_dict.items():
        assert t.dtype == torch.float16
        assert torch.equal(t, original.state_dict[k].to(torch.float16))
    assert wd.read_safetensors_metadata(res.compact_path)["source_sha256"] == sha(payload)
    assert sorted(leftovers(tmp_path)) == sorted([wd.CHECKPOINT_FILENAME, wd.COMPACT_FILENAME])


def test_manual_install_lines_say_where_and_what(tmp_path):
    text = "\n".join(wd.manual_install_lines(tmp_path / "weights"))
    for needle in (str(tmp_path / "weights"), wd.CHECKPOINT_FILENAME, wd.MODEL_PAGE_URL,
                   wd.LICENSE_URL, "fetch-weights --accept-license"):
        assert needle in text


def test_cli_refuses_without_accept_license(tmp_path, payload):
    out = tmp_path / "w"
    with WeightsServer(payload) as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "model_runtime", "fetch-weights", "--to", str(out), "--url", srv.url],
            capture_output=True, text=True, timeout=120, env=os.environ.copy(),
        )
        assert srv.requests == []
    assert proc.returncode != 0
    assert "non-commercial" in proc.stderr and "--accept-license" in proc.stderr
    assert wd.LICENSE_URL in proc.stderr
    assert not out.exists()


def test_cli_downloads_and_converts(tmp_path, payload, capsys):
    out = tmp_path / "w"
    with WeightsServer(payload, drop_after=4000, drops=1) as srv:
        rc = cli_main(["fetch-weights", "--accept-license", "--to", str(out), "--url", srv.url,
                       "--sha256", sha(payload)])
    assert rc == 0
    assert (out / wd.CHECKPOINT_FILENAME).read_bytes() == payload
    assert (out / wd.COMPACT_FILENAME).is_file()
    assert str(out / wd.COMPACT_FILENAME) in capsys.readouterr().out
    with WeightsServer(payload) as srv:  # a wrong --sha256: rejected, exit 1, nothing kept
        rc = cli_main(["fetch-weights", "--accept-license", "--to", str(tmp_path / "x"),
                       "--url", srv.url, "--sha256", "ab" * 32, "--no-convert"])
    assert rc == 1 and "SHA-256" in capsys.readouterr().err
    assert leftovers(tmp_path / "x") == []


def test_complete_part_file_is_finished_after_416(tmp_path, payload):
    final = tmp_path / wd.CHECKPOINT_FILENAME
    seen = {"done": 0}
    with WeightsServer(payload) as srv:
        with pytest.raises(Cancelled):  # every byte arrived, then the cancel came before the rename
            wd.download_file(srv.url, final, sha256=sha(payload), chunk_size=1024,
                             progress=lambda s, d, t: seen.update(done=d),
                             cancel=lambda: seen["done"] >= len(payload))
        assert not final.exists() and wd.partial_download(tmp_path)[1] == len(payload)
        res = wd.download_file(srv.url, final, sha256=sha(payload))
        assert srv.file_requests()[-1]["range"] == f"bytes={len(payload)}-"  # answered 416
    assert res.resumed_from == len(payload) and final.read_bytes() == payload
    assert leftovers(tmp_path) == [wd.CHECKPOINT_FILENAME]


# ---- issue 17: bounded work, pinned size, honest "verified", free space, no downgrade ----

def test_released_file_size_and_hash_are_pinned():
    assert wd.EXPECTED_SIZE == 1_243_631_761
    assert wd.EXPECTED_SHA256 == "463efc8a3afd3913142aa025e0125c00f16ef452b8de6a132ebe32bbe7877ee4"
    assert wd.resolve_size(wd.AUTO, wd.EXPECTED_SHA256) == wd.EXPECTED_SIZE
    assert wd.resolve_size(wd.AUTO, None) == wd.EXPECTED_SIZE  # --sha256 none still checks the size
    assert wd.resolve_size(wd.AUTO, "ab" * 32) is None  # another file: its size is not known


def test_server_that_ignores_range_and_drops_every_time_is_given_up_on(tmp_path, payload):
    """Issue 17: such a server kept the download looping (1,536 requests in 60 s)."""
    import time

    final = tmp_path / wd.CHECKPOINT_FILENAME
    t0 = time.monotonic()
    with WeightsServer(payload, support_range=False, drop_after=5000, drops=10**9) as srv:
        with pytest.raises(wd.DownloadError, match="3 retries in a row made no progress"):
            wd.download_file(srv.url, final, sha256=sha(payload), backoff=0, retries=3, chunk_size=1024)
        n = len(srv.file_requests())
    assert n == 5  # the first attempt got 5000 bytes; four more got no further
    assert time.monotonic() - t0 < 30
    assert not final.exists()


def test_overall_attempt_limit_and_time_budget(tmp_path, payload):
    import time

    final = tmp_path / wd.CHECKPOINT_FILENAME
    # Each attempt makes a little progress (so the in-a-row count keeps resetting): the overall
    # request limit stops it.
    with WeightsServer(payload, drop_after=100, drops=10**9) as srv:
        with pytest.raises(wd.DownloadError, match="7 requests did not complete the file"):
            wd.download_file(srv.url, final, sha256=sha(payload), backoff=0, max_attempts=7, chunk_size=64)
        assert len(srv.file_requests()) == 7
    assert wd.partial_download(tmp_path)[1] == 700  # kept for a later resume
    wd.discard_partial(tmp_path)
    t0 = time.monotonic()
    with WeightsServer(payload, fail_status=503) as srv:  # transient errors, retried without end ...
        with pytest.raises(wd.DownloadError, match="time budget of 1 s ran out"):  # ... but for the budget
            wd.download_file(srv.url, final, sha256=sha(payload), backoff=0.2, retries=10**6, time_budget=1.0)
    assert time.monotonic() - t0 < 15
    assert not final.exists()


def test_size_mismatch_is_refused_from_content_length_before_any_byte(tmp_path, payload):
    with WeightsServer(payload) as srv:  # the default: the released file's pinned size
        with pytest.raises(wd.ChecksumError, match="offers 14,625 bytes but the expected size is 1,243,631,761"):
            wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=None)
        assert len(srv.file_requests()) == 1
    assert leftovers(tmp_path) == []


def test_existing_file_of_the_wrong_size_is_refused_without_hashing(tmp_path):
    final = tmp_path / wd.CHECKPOINT_FILENAME
    final.write_bytes(b"\0" * 5000)
    stages = []
    with pytest.raises(wd.ChecksumError, match="5,000 bytes, not 1,243,631,761"):
        wd.download_file("http://127.0.0.1:9/never", final, progress=lambda s, d, t: stages.append(s))
    assert stages == []  # not hashed
    assert final.read_bytes() == b"\0" * 5000  # the user's file is left alone


def test_cut_download_without_hash_is_never_installed_or_called_verified(tmp_path, payload, capsys):
    """Issue 17: `--sha256 none` installed a 60 % file and printed "downloaded and verified"."""
    cut = payload[: int(len(payload) * 0.6)]
    with WeightsServer(cut, send_length=False) as srv:  # no Content-Length: ends at the close
        rc = cli_main(["fetch-weights", "--accept-license", "--to", str(tmp_path / "a"), "--url", srv.url,
                       "--sha256", "none", "--no-convert", "--quiet", "--retries", "0"])
    err = capsys.readouterr()
    assert rc == 1
    assert "error: Downloaded 8,775 bytes, expected 1,243,631,761" in err.err
    assert "verified" not in err.out
    assert wd.installed_weights(tmp_path / "a") is None and leftovers(tmp_path / "a") == []
    with WeightsServer(cut, send_length=False) as srv:  # nothing says how long it should be
        with pytest.raises(wd.DownloadError, match="no way to tell a complete download from a cut one"):
            wd.download_file(srv.url, tmp_path / "b" / wd.CHECKPOINT_FILENAME, sha256=None, size=None)
    assert leftovers(tmp_path / "b") == []
    with WeightsServer(payload) as srv:  # complete, right size, but unhashed: said so
        rc = cli_main(["fetch-weights", "--accept-license", "--to", str(tmp_path / "c"), "--url", srv.url,
                       "--sha256", "none", "--size", str(len(payload)), "--no-convert", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0
    assert "NOT verified: no SHA-256 was given (size 14,625 bytes checked" in out.out
    assert "and verified" not in out.out


def test_free_space_is_checked_before_writing(tmp_path, payload):
    with WeightsServer(payload, declared_length=2**60) as srv:  # more than any disk holds
        with pytest.raises(wd.DiskSpaceError, match="not enough free space"):
            wd.download_file(srv.url, tmp_path / wd.CHECKPOINT_FILENAME, sha256=sha(payload), size=None)
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), and a client context trusting it."""
    import shutil
    import ssl

    if not shutil.which("openssl"):
        pytest.skip("openssl not available")
    d = tmp_path_factory.mktemp("tls")
    pem = d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(pem), "-out", str(pem)], check=True, capture_output=True, timeout=60)
    ctx = ssl.create_default_context(cafile=str(pem))
    return str(pem), ctx


def test_https_to_http_redirect_is_refused(tmp_path, payload, tls_cert):
    pem, ctx = tls_cert
    with WeightsServer(payload) as plain:
        with WeightsServer(payload, certfile=pem, redirect_to=plain.url) as tls:
            # The secure server works on its own ...
            ok = wd.download_file(tls.url, tmp_path / "ok" / wd.CHECKPOINT_FILENAME, sha256=sha(payload),
                                  size=None, ssl_context=ctx)
            assert ok.verified
            # ... but its redirect to plain http is not followed.
            with pytest.raises(wd.DownloadError, match="redirected the https download to an insecure http URL"):
                wd.download_file(tls.redirect_url, tmp_path / "x" / wd.CHECKPOINT_FILENAME,
                                 sha256=sha(payload), size=None, ssl_context=ctx)
        assert plain.file_requests() == []
    assert leftovers(tmp_path / "x") == []
