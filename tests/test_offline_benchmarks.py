"""The offline RL benchmarks' bookkeeping: run order (pairs side by side), the training-loop time read back
from metrics.jsonl, the imitate / d3rlpy time ratios, and the env steps to a target on an evaluation curve."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import offline_rl  # noqa: E402
import offline_to_online  # noqa: E402


def test_each_imitate_run_is_next_to_its_d3rlpy_counterpart_seed_by_seed():
    args = argparse.Namespace(data=["f.hdf5"], heads="gaussian", algos="iql,awac", seeds="0,1",
                              methods="bc,offline,d3rlpy")
    order = [(r["seed"], r["method"], r["algo"]) for r in offline_rl.plan(args)]
    assert order == [(0, "bc", "bc"), (0, "offline", "iql"), (0, "d3rlpy", "iql"), (0, "offline", "awac"),
                     (0, "d3rlpy", "awac"), (1, "bc", "bc"), (1, "offline", "iql"), (1, "d3rlpy", "iql"),
                     (1, "offline", "awac"), (1, "d3rlpy", "awac")]


def test_loop_seconds_sums_the_logged_rates(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": 100, "time/steps_per_s": 50.0}, {"step": 200, "time/steps_per_s": 25.0},
               {"step": 200, "env_steps": 0, "eval/return": -5.0},          # an evaluation record: no rate
               {"step": 250, "time/steps_per_s": 10.0}, {"final": {"step": 250}}]
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert offline_rl.loop_seconds(metrics) == pytest.approx(2 + 4 + 5)
    assert offline_rl.loop_seconds(tmp_path / "missing.jsonl") is None


def test_pairs_match_file_algo_seed_steps_and_settings():
    def rec(method, algo, seed, loop, wall, variant="", head="gaussian"):
        return {"method": method, "data": "d/p.hdf5", "algo": algo, "head": head, "seed": seed, "steps": 100,
                "variant": variant, "loop_s": loop, "wall_s": wall, "normalized_return": 0.5, "success_rate": None}
    records = [rec("offline", "iql", 0, 10, 20), rec("d3rlpy", "iql", 0, 30, 50),
               rec("offline", "iql", 1, 10, 20), rec("d3rlpy", "iql", 1, 20, 30),
               rec("offline", "iql", 2, 10, 20),                                # no counterpart: no pair
               rec("offline", "iql", 0, 10, 20, head="gmm"),                    # not the gaussian actor
               rec("offline", "awac", 0, 10, 20, variant="--n-act 1"), rec("d3rlpy", "awac", 0, 5, 5)]
    pairs = offline_rl.pair_ratios(records)
    assert [(p["algo"], p["seed"], p["ratio_loop_s"], p["ratio_wall_s"]) for p in pairs] == [
        ("iql", 0, 3.0, 2.5), ("iql", 1, 2.0, 1.5)]
    text = offline_rl.pairs_table(records)
    assert "| p.hdf5 | iql | - | 100 | 2 | 2.50 (2.00-3.00) | 2.00 (1.50-2.50) |" in text


def test_steps_to_target_is_the_first_evaluation_at_or_above_it(tmp_path):
    refs = {"expert": {"mean_return": -100.0}, "random": {"mean_return": -1100.0}}
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 5, "env_steps": 0, "eval/return": -600.0}, {"step": 10, "time/steps_per_s": 3.0},
            {"step": 15, "env_steps": 10, "eval/return": -190.0}, {"step": 25, "env_steps": 20, "eval/return": -150.0}]
    metrics.write_text("\n".join(json.dumps(r) for r in rows))
    curve = offline_to_online.eval_curve(metrics, refs)
    assert [round(c["normalized"], 2) for c in curve] == [0.5, 0.91, 0.95]
    assert offline_to_online.steps_to(curve, 0.9) == 10
    assert offline_to_online.steps_to(curve, 0.96) is None


def test_deterministic_evaluation_is_kept_apart_and_preferred_in_the_pairs():
    def rec(method, how=None, norm=0.5):
        r = {"method": method, "data": "d/p.hdf5", "algo": "iql", "head": "gaussian", "seed": 0, "steps": 100,
             "variant": "", "loop_s": 10, "wall_s": 20, "normalized_return": norm, "success_rate": None}
        return {**r, "eval": how} if how else r
    run = {"data": "d/p.hdf5", "method": "offline", "algo": "iql", "head": "gaussian", "seed": 0}
    assert offline_rl.run_key(run, 100, 20, deterministic=True).endswith("|e20|det")
    assert not offline_rl.run_key({**run, "method": "d3rlpy"}, 100, 20, deterministic=True).endswith("|det")
    records = [rec("offline", norm=0.5), rec("offline", "deterministic", norm=0.9), rec("d3rlpy", norm=0.6)]
    assert [p["imitate_norm"] for p in offline_rl.pair_ratios(records)] == [0.9]
    rows = [line for line in offline_rl.table(records).splitlines() if line.startswith("| p.hdf5")]
    assert [(row.split(" | ")[1], row.split(" | ")[6], row.split(" | ")[9]) for row in rows] == [
        ("d3rlpy", "deterministic", "0.60"), ("offline", "deterministic", "0.90"), ("offline", "sampled", "0.50")]


def test_a_trained_run_is_evaluated_again_not_trained_again(tmp_path, monkeypatch):
    data = tmp_path / "p.hdf5"
    data.write_bytes(b"")
    out = tmp_path / "out"
    key = "p.hdf5|offline|iql|gaussian|s0|n100|e5"
    run_dir = out / "runs" / key.replace("|", "_")
    run_dir.mkdir(parents=True)
    (run_dir / "model.safetensors").write_bytes(b"")
    (out / "results.jsonl").write_text(json.dumps({"key": key, "method": "offline", "data": str(data), "algo": "iql",
                                                   "head": "gaussian", "seed": 0, "steps": 100, "train_s": 7.0,
                                                   "loop_s": 6.0, "wall_s": 8.0, "mean_return": -900.0}) + "\n")
    calls = []
    monkeypatch.setattr(offline_rl, "offline_command_help", lambda: ("--seed", ""))
    monkeypatch.setattr(offline_rl, "references", lambda path: {})
    monkeypatch.setattr(offline_rl, "run_imitate", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(offline_rl, "_run", lambda cmd, what: calls.append(cmd) or ({"mean_return": -150.0}, 2.0))
    offline_rl.main(["--data", str(data), "--out", str(out), "--methods", "offline", "--algos", "iql", "--heads",
                     "gaussian", "--seeds", "0", "--steps", "100", "--episodes", "5", "--deterministic"])
    assert calls and calls[0][-1] == "--deterministic" and str(run_dir) in calls[0]
    new = offline_rl.read_results(out)[-1]
    assert (new["key"], new["eval"], new["mean_return"], new["train_s"], new["wall_s"]) == (
        key + "|det", "deterministic", -150.0, 7.0, 9.0)


def test_start_before_is_the_next_time_the_clock_reads_it_past_midnight_too():
    import calendar

    evening = calendar.timegm((2026, 12, 2, 23, 29, 0))
    assert offline_rl.next_time_of_day("23:45", evening) == evening + 16 * 60
    assert offline_rl.next_time_of_day("01:00", evening) == evening + 91 * 60           # tomorrow
    assert offline_rl.next_time_of_day("23:29", evening) == evening + 86400
    with pytest.raises(SystemExit):
        offline_rl.next_time_of_day("25:00", evening)
