"""The benchmark's command line and measuring harness run end to end on tiny settings (their
numbers mean nothing here; tests/test_benchmark_peers.py checks what they compute)."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks.configs import CONFIGS, tiny
from benchmarks.harness import count_flops, peak_memory
from benchmarks.inner_loop import main
from benchmarks.peers import OPT_IN, build_meta_iteration, peers_for


@pytest.fixture
def one_thread():
    """Tiny problems on a shared CPU: extra threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_command_line_writes_every_section(tmp_path, one_thread):
    out, page = tmp_path / "perf.json", tmp_path / "perf.md"
    report = main(["--tiny", "--configs", "a,s", "--repeats", "1", "--warmup", "0",
                   "--flat-iterations", "2", "--skip-memory", "--json", str(out),
                   "--markdown", str(page)])
    assert json.loads(out.read_text())["configs"].keys() == report["configs"].keys()
    assert set(report["configs"]) == {"a-maml", "a-fomaml", "s-linreg"}
    assert "## a-maml" in page.read_text() and "| learn2learn |" in page.read_text()
    for name, entry in report["configs"].items():
        results = entry["results"]
        assert list(results) == [peer for peer in peers_for(tiny(CONFIGS[name]))
                                 if peer not in OPT_IN]  # the compiled ones only when asked
        for row in results.values():
            assert len(row["times_s"]) == 1 and row["peak_memory_mb"] is None
            assert row["speedup_vs_learn2learn"] is not None
    assert set(report["order_comparison"]) == {"MAML 1 step(s)", "FOMAML 1 step(s)",
                                               "MAML 5 step(s)", "FOMAML 5 step(s)"}
    assert set(report["flat_memory"]) == {"gbml_ext", "batched"}
    assert report["ceiling"]["matmul_gflops"] > 0


def test_peers_count_the_same_flops(one_thread):
    """The group-aware convolution formula makes vmap's grouped convolutions count what the
    per-task convolutions count, so GFLOP/s compare like with like."""
    config = tiny(CONFIGS["a-maml"])
    flops = {peer: count_flops(build_meta_iteration(config, peer, torch.device("cpu")))
             for peer in ("gbml_ext", "batched", "learn2learn", "torch.func")}
    assert len(set(flops.values())) == 1 and flops["gbml_ext"] > 0, flops


@pytest.mark.slow
def test_cpu_peak_memory_comes_from_a_fresh_process():
    config = tiny(CONFIGS["s-linreg"])
    assert peak_memory(config, "gbml_ext", torch.device("cpu")) >= 0


def test_reports_are_written_config_by_config_and_a_time_budget_skips_the_rest(
        tmp_path, one_thread, monkeypatch):
    import benchmarks.inner_loop as inner_loop

    out, page = tmp_path / "perf.json", tmp_path / "perf.md"
    seen = []
    real_save = inner_loop._save

    def save(report, args):
        real_save(report, args)
        seen.append(sorted(json.loads(out.read_text()).get("configs", {})))

    monkeypatch.setattr(inner_loop, "_save", save)
    report = main(["--tiny", "--configs", "s,a", "--peers", "gbml_ext,learn2learn",
                   "--repeats", "1", "--skip-memory", "--skip-order-comparison",
                   "--flat-iterations", "0", "--max-seconds", "1e-9", "--json", str(out),
                   "--markdown", str(page)])
    # The budget is spent before the first config: every section is listed as skipped, and
    # the files say so as they go.
    assert report["configs"] == {} and set(report["skipped"]) == {"s-linreg", "a-maml",
                                                                  "a-fomaml"}
    assert "Not run (time budget)" in page.read_text()
    report = main(["--tiny", "--configs", "s,a", "--peers", "gbml_ext,learn2learn",
                   "--repeats", "1", "--skip-memory", "--skip-order-comparison",
                   "--flat-iterations", "0", "--json", str(out)])
    assert ["s-linreg"] in seen and ["a-maml", "s-linreg"] in seen  # written after each config
    assert set(report["configs"]) == {"s-linreg", "a-maml", "a-fomaml"}


def test_a_failing_peer_is_reported_and_the_others_still_measured(one_thread, monkeypatch):
    from benchmarks.harness import benchmark_config
    from benchmarks.peers import PEERS, Peer

    def broken(config, learner, tasks):
        def meta_iteration():
            raise RuntimeError("mat2 is on cpu")
        return learner, meta_iteration

    monkeypatch.setitem(PEERS, "broken", Peer("broken", broken))
    skipped = {}
    results = benchmark_config(tiny(CONFIGS["s-linreg"]), ["gbml_ext", "broken"],
                               torch.device("cpu"), 1, 1, False, skipped)
    assert list(results) == ["gbml_ext"] and "mat2 is on cpu" in skipped["broken"]


def test_unknown_peer_is_refused():
    with pytest.raises(SystemExit, match="unknown or uninstalled peers"):
        main(["--peers", "nonesuch", "--configs", "", "--flat-iterations", "0"])


def test_evaluation_benchmark_variants_score_the_same_tasks(tmp_path, one_thread):
    from benchmarks import evaluation

    out = tmp_path / "eval.json"
    evaluation.main(["--tasks", "2", "--rounds", "1", "--algorithms", "anil",
                     "--variants", "nhwc", "batched", "--json", str(out)])
    report = json.loads(out.read_text())
    losses = report["final_loss"]
    assert set(losses) == {"anil per-task", "anil nhwc", "anil batched"}
    assert max(losses.values()) - min(losses.values()) < 1e-4 * abs(losses["anil per-task"])


def test_demo_speed_compares_tables_without_the_timing_column():
    from benchmarks.demo_speed import loss_table

    one = "| model | loss | meta-train s / seed |\n|---|---|---|\n| Shallow | 0.5 | 5.5 |\ntook 9 s"
    two = one.replace("5.5", "1.4").replace("9 s", "3 s")
    assert loss_table(one) == loss_table(two)
    assert loss_table(one) != loss_table(two.replace("0.5", "0.6"))


def test_configs_by_name_and_flops_counted_once(one_thread):
    report = main(["--tiny", "--configs", "s-linreg", "--peers", "gbml_ext,batched",
                   "--repeats", "1", "--skip-memory", "--skip-order-comparison",
                   "--flat-iterations", "0", "--count-flops", "one"])
    results = report["configs"]["s-linreg"]["results"]
    assert list(report["configs"]) == ["s-linreg"]
    assert results["gbml_ext"]["flops"] == results["batched"]["flops"] > 0
    with pytest.raises(SystemExit, match="unknown configs"):
        main(["--configs", "z-nothing", "--flat-iterations", "0"])


def test_fast_peers_are_timed_over_blocks_of_calls(one_thread, monkeypatch):
    """A sub-millisecond call is timed in blocks lasting about min_repeat_s, and the time is
    per call; a slow one in single calls."""
    from benchmarks import harness

    slow_seconds = 0.03

    def fake(config, name, device):
        if name == "learn2learn":
            return lambda: torch.ones(1).add_(1)
        return lambda: __import__("time").sleep(slow_seconds)

    monkeypatch.setattr(harness, "build_meta_iteration", fake)
    results = harness.benchmark_config(CONFIGS["s-linreg"], ["learn2learn", "gbml_ext"],
                                       torch.device("cpu"), repeats=2, warmup=1,
                                       measure_memory=False, count_flops_of="none",
                                       min_repeat_s=0.02)
    fast, slow = results["learn2learn"], results["gbml_ext"]
    assert fast["calls_per_repeat"] > 10 and fast["median_s"] < 1e-3
    assert slow["calls_per_repeat"] == 1
    assert slow["median_s"] == pytest.approx(slow_seconds, rel=0.5)
