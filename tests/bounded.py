"""Helper (no tests): run a snippet in a fresh Python process and measure what it costs.

`run_bounded(setup, call)` runs `setup` (imports, reading inputs), then `call` (a statement that
may raise), and returns {"error": type name or None, "message": str, "seconds": float,
"peak_mb": growth of the peak resident set over what setup had reached}. The peak is the
process's ru_maxrss, so memory taken by torch or numpy (which tracemalloc misses) counts.
"""
import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

_SCRIPT = r'''
import json, resource, sys, time
setup, call = sys.argv[1], sys.argv[2]
ns = {}
exec(setup, ns)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
err, msg = None, ""
try:
    exec(call, ns)
except BaseException as exc:
    err, msg = type(exc).__name__, str(exc)
dt = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({"error": err, "message": msg, "seconds": dt, "peak_mb": (peak - base) / 1024}))
'''


def run_bounded(setup: str, call: str, timeout: float = 300, env=None) -> dict:
    r = subprocess.run([sys.executable, "-c", _SCRIPT, textwrap.dedent(setup), textwrap.dedent(call)],
                       capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result (rc {r.returncode}): {r.stderr[-2000:]}"
    return json.loads(lines[-1][len("RESULT "):])
