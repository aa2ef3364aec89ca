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
    assert "host itself lists" in msg  # the host's X-Linked-Etag matched what arrived
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
            wd.download_file(other.url, final, sha256=None, cancel=lambda: final.with_name(
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
