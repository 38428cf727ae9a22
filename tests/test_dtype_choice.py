"""`dtype: auto` decided by measurement (faked timers: behaviour only, no timing), and MFU against the
machine's best peak."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from tunescope.models import dtype_choice
from tunescope.models.dtype_choice import choose_dtype, product_shape
from tunescope.train import throughput

CPU = torch.device("cpu")
SHAPE = (128, 576, 1536)


def fake_timer(gflops: dict[str, float], calls: list | None = None):
    """A timer that reports fixed GFLOP/s per dtype (and raises for a dtype left out, as a CPU that
    cannot run it would)."""

    def timer(dtype, shape):
        if calls is not None:
            calls.append((dtype, shape))
        name = dtype_choice.dtype_name(dtype)
        if name not in gflops:
            raise RuntimeError(f"{name} is not supported")
        return gflops[name]

    return timer


@pytest.mark.parametrize(("bf16", "expected"), [(117.0, torch.float32), (1.1 * 218, torch.float32),
                                                 (1.5 * 218, torch.bfloat16)])
def test_cpu_takes_bfloat16_only_when_clearly_faster(bf16, expected):
    choice = choose_dtype(CPU, SHAPE, timer=fake_timer({"float32": 218.0, "bfloat16": bf16}))
    assert choice.dtype == expected
    record = choice.record()
    assert record["requested"] == "auto" and record["dtype"] == dtype_choice.dtype_name(expected)
    assert record["gflops"] == {"float32": 218.0, "bfloat16": round(bf16, 2)}
    assert record["bf16_speedup"] == pytest.approx(bf16 / 218.0, abs=1e-3)
    assert record["min_bf16_speedup"] == 1.2 and "1.2×" in record["rule"] and record["shape"] == list(SHAPE)
    assert "218 GFLOP/s" in record["reason"] and "bfloat16" in record["reason"]


def test_bfloat16_that_cannot_run_means_float32():
    choice = choose_dtype(CPU, SHAPE, timer=fake_timer({"float32": 50.0}))
    assert choice.dtype == torch.float32 and choice.gflops == {"float32": 50.0}
    assert "do not run" in choice.reason


@pytest.mark.parametrize(("bf16_supported", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_is_known_not_measured(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    calls = []
    choice = choose_dtype(torch.device("cuda"), SHAPE, timer=fake_timer({"float32": 1.0}, calls))
    assert choice.dtype == expected and calls == [] and choice.record()["gflops"] is None


def test_measurement_is_cached_per_machine_and_shape(tmp_path):
    calls, threads = [], []
    rates = fake_timer({"float32": 218.0, "bfloat16": 117.0}, calls)

    def timer(dtype, shape):
        threads.append(torch.get_num_threads())
        return rates(dtype, shape)

    before = torch.get_num_threads()
    cache = tmp_path / "dtype_choice.json"
    first = choose_dtype(CPU, SHAPE, timer=timer, cache_path=cache)
    assert len(calls) == 2 and not first.cached
    assert threads == [1, 1] and torch.get_num_threads() == before  # one thread while timing, then restored
    again = choose_dtype(CPU, SHAPE, timer=timer, cache_path=cache)
    assert len(calls) == 2 and again.cached and again.dtype == first.dtype and again.gflops == first.gflops
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["gflops"] == {"float32": 218.0, "bfloat16": 117.0}
    key = next(iter(json.loads(cache.read_text())))
    assert torch.__version__ in key and "threads 1" in key
    choose_dtype(CPU, (256, 576, 1536), timer=timer, cache_path=cache)  # another shape measures anew
    assert len(calls) == 4


def test_unreadable_cache_measures_anyway(tmp_path):
    (tmp_path / "dtype_choice.json").write_text("not json")
    choice = choose_dtype(CPU, SHAPE, timer=fake_timer({"float32": 2.0, "bfloat16": 4.0}),
                          cache_path=tmp_path / "dtype_choice.json")
    assert choice.dtype == torch.bfloat16 and not choice.cached


def test_product_shape_follows_the_model_within_bounds():
    rows, k, n = product_shape(576, 1536)
    assert (k, n) == (576, 1536) and 64 <= rows <= 512
    assert product_shape(64, 128)[1:] == (256, 1024)  # toy widths time only overheads
    assert product_shape(4096, 11008)[1:] == (1024, 2048)  # wide models: a slice of the same kind
    assert (dtype_choice.shape_of_config(SimpleNamespace(hidden_size=896, intermediate_size=4864))[1:]
            == (896, 2048))


def test_time_matmul_reports_a_rate():
    assert dtype_choice.time_matmul(torch.float32, (64, 256, 1024)) > 0


def test_load_model_records_the_choice(tiny_model_dir, tmp_path, monkeypatch):
    from tunescope.models import load_model

    monkeypatch.setenv("TUNESCOPE_CACHE", str(tmp_path))
    monkeypatch.setattr(dtype_choice, "time_matmul", fake_timer({"float32": 218.0, "bfloat16": 117.0}))
    loaded = load_model(str(tiny_model_dir))
    assert loaded.dtype == torch.float32 and next(loaded.model.parameters()).dtype == torch.float32
    record = loaded.dtype_choice.record()
    assert record["gflops"] == {"float32": 218.0, "bfloat16": 117.0} and record["shape"][1:] == [256, 1024]
    assert (tmp_path / "dtype_choice.json").is_file()
    explicit = load_model(str(tiny_model_dir), dtype="bfloat16")
    assert (explicit.dtype_choice.record()["requested"] == "bfloat16"
            and explicit.dtype_choice.reason == "set explicitly")


def test_manifest_and_report_carry_the_figures(tmp_path, monkeypatch):
    from synthetic_run import build_run
    from tunescope.config.loading import load_config
    from tunescope.recipes import run as pipeline

    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))
    choice = choose_dtype(CPU, SHAPE, timer=fake_timer({"float32": 218.0, "bfloat16": 117.0}))
    loaded = SimpleNamespace(device=CPU, dtype=choice.dtype, dtype_choice=choice, source="dir")
    manifest = pipeline._manifest(load_config(None, ["name=x"]), {}, loaded)
    assert manifest["dtype_choice"]["gflops"] == {"float32": 218.0, "bfloat16": 117.0}
    assert manifest["dtype_choice"]["bf16_speedup"] == pytest.approx(117 / 218, abs=1e-3)

    run = build_run(tmp_path, "dtype", with_eval=False, with_train_examples=False)
    saved = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**saved, "dtype_choice": manifest["dtype_choice"]}))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records[-1].update(dtype="bfloat16", peak_flops=218e9, peak_flops_dtype="float32",
                       peak_flops_source="measured", peak_flops_own_dtype=117e9, mfu=0.299,
                       mfu_own_dtype=0.558, peak_flops_by_dtype={"float32": 218e9, "bfloat16": 117e9})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    paths = pipeline.write_report(run, register=False)
    data = json.loads(paths["json"].read_text())
    assert data["efficiency"]["dtype_choice"]["gflops"]["float32"] == 218.0
    for text in (paths["md"].read_text(), paths["html"].read_text()):
        assert "29.90% of the machine's best peak: float32 218 GFLOP/s, measured" in text
        assert "55.80% of bfloat16's 117 GFLOP/s" in text
        assert "chosen by" in text and "bfloat16 117 vs float32 218 GFLOP/s, 0.54×" in text


def test_mfu_peak_is_the_best_dtype_and_names_it(monkeypatch):
    peaks = {torch.float32: (218e9, "measured"), torch.bfloat16: (117e9, "measured")}
    monkeypatch.setattr(throughput, "_peak_flops", lambda device, dtype: peaks[dtype])
    peak = throughput.machine_peak(CPU, torch.bfloat16)
    assert peak == {"peak_flops": 218e9, "peak_flops_dtype": "float32", "peak_flops_source": "measured",
                    "peak_flops_own_dtype": 117e9,
                    "peak_flops_by_dtype": {"float32": 218e9, "bfloat16": 117e9}}
    assert throughput.machine_peak(CPU, torch.float32)["peak_flops_own_dtype"] == 218e9


def test_training_summary_divides_by_the_best_peak(tiny_model_dir, tiny_tokenizer, monkeypatch,
                                                   one_torch_thread):
    from test_train_loop import _examples, _model, _train

    peaks = {torch.float32: (4e9, "measured"), torch.bfloat16: (1e11, "measured")}
    monkeypatch.setattr(throughput, "_peak_flops", lambda device, dtype: peaks[dtype])
    model, cfg = _model(tiny_model_dir, max_steps=2, batch_size=4)
    summary, _ = _train(model, cfg, _examples(tiny_tokenizer, 8))
    assert summary["dtype"] == "float32" and summary["peak_flops_dtype"] == "bfloat16"
    assert summary["peak_flops"] == 1e11 and summary["peak_flops_own_dtype"] == 4e9
    assert summary["mfu_own_dtype"] == pytest.approx(summary["mfu"] * 25)
