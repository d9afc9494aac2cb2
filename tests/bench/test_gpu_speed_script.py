"""bench/gpu_speed.py runs where it is written (CPU, tiny random model), so the device run is not its first run."""

from __future__ import annotations

import json
import subprocess
import sys

from locations import ROOT


def test_the_gpu_speed_script_runs_on_the_cpu_and_checks_the_torch_kernel(tiny_model, tmp_path):
    out = tmp_path / "gpu_speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_speed.py"), "--model", str(tiny_model), "--random-weights",
                           "--device", "cpu", "--tokens", "8", "--batch", "3", "--repeats", "2", "--power-repeats", "1", "--warmup", "0",
                           "--profile", str(tmp_path / "prof"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["random_weights"] and got["device"] == "cpu" and got["repeats_done"] == 2
    check = got["kernel_check"]
    assert check["same_token"] == check["rows"] == 96 and check["max_abs_diff"] < 1e-5
    assert set(got["tokens_per_s"]) == {"generate_b1", "strop_host_b1", "strop_device_b1", "generate_b3", "strop_host_b3",
                                        "strop_device_b3", "power_1_chain", "power_3_chains"}
    assert all(v > 0 for v in got["tokens_per_s"].values())
    assert set(got["strop_over_generate"]) == {"b1_host", "b1_device", "b3_host", "b3_device"}
    assert len(got["runs"]["power_1_chain"]) == 1 and len(got["runs"]["generate_b3"]) == 2  # power in the first repeat only
    for path in ("generate", "strop_device"):
        assert got["profile"][path]["wall_ms_per_step"] > 0 and got["profile"][path]["aten_calls_per_step"] > 0
        assert "sorted by count" in (tmp_path / "prof" / f"{path}.txt").read_text()


def test_compare_align_adds_a_path_with_the_attention_width_unrounded(tiny_model, tmp_path):
    out = tmp_path / "gpu_speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_speed.py"), "--model", str(tiny_model), "--random-weights",
                           "--device", "cpu", "--tokens", "4", "--batch", "2", "--repeats", "1", "--no-power", "--warmup", "0",
                           "--compare-align", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert {"strop_device_align1_b1", "strop_device_align1_b2"} <= set(got["tokens_per_s"])
    assert {"b1_device_align1", "b2_device_align1"} <= set(got["strop_over_generate"])


def test_smc_mode_times_one_problem_alone_against_plain_sampling(tiny_model, tmp_path):
    out = tmp_path / "gpu_speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_speed.py"), "--model", str(tiny_model), "--random-weights",
                           "--device", "cpu", "--tokens", "8", "--batch", "2", "--repeats", "1", "--no-power", "--warmup", "0",
                           "--smc", "4", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["runs"]["latency_sample_s"][0] > 0 and got["runs"]["latency_smc4_s"][0] > 0
    assert got["runs"]["smc4_decoded_tokens"][0] >= 4  # four particles, each at least one token
    assert got["smc_latency_over_sampling"] > 0
