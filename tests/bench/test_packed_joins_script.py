"""bench/packed_joins.py runs (tiny model): both settings of HFBackend.packed_joins, timed side by side."""

from __future__ import annotations

import json
import subprocess
import sys

from locations import ROOT


def test_the_packed_joins_bench_times_both_settings(tiny_model, tmp_path):
    out = tmp_path / "packed_joins.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "packed_joins.py"), "--model", str(tiny_model), "--requests", "6",
                           "--slots", "3", "--repeats", "2", "--pass-costs", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert len(got["seconds"]["packed"]) == len(got["seconds"]["split"]) == 2
    assert got["split_over_packed"] > 0
    assert set(got["pass_ms"]) == {"1x1", "1x8", "1x31", "8x1", "8x31"} and all(v > 0 for v in got["pass_ms"].values())
    # Same rng streams, and on the tiny float32 model rounding is far too small to flip a token: every request agrees.
    assert got["requests_with_the_same_tokens"] == [6, 6]
