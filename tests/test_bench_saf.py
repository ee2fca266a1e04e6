"""tools/bench/saf.py keeps working: quick runs return sane figures (no timing asserts)."""
import pytest

from tools.bench import saf as bench_saf

N = 20


def _positive(d, *keys):
    for key in keys:
        assert isinstance(d[key], float) and d[key] > 0, key


def test_advice_payload_is_realistic():
    p = bench_saf.advice_payload("000042", 1250, when=1_780_000_000)
    assert p["track2"] == "4761739001010010=29122011234567890"
    assert p["entry"] == "chip" and p["de11"] == "000042" and p["de4"] == 1250
    assert 180 <= len(p["de55"]) <= 220 and int(p["de55"], 16) >= 0
    assert len(p["de12"]) == 6 and len(p["de13"]) == 4
    assert "9F0206000000001250" in p["de55"]


def test_filesystem_of_names_a_mount(tmp_path):
    fs = bench_saf.filesystem_of(str(tmp_path))
    assert fs["fstype"] != "?" and fs["mount"].startswith("/")
    assert str(tmp_path).startswith(fs["mount"])


def test_bench_enqueue_quick(tmp_path):
    out = bench_saf.bench_enqueue(N, str(tmp_path))
    _positive(out, "fsync_median_ms", "fsync_p99_ms", "add_median_ms", "add_p99_ms",
              "ack_median_ms", "ack_p99_ms", "add_over_fsync", "ack_over_fsync")
    assert out["fsync_p99_ms"] >= out["fsync_median_ms"]
    assert out["add_p99_ms"] >= out["add_median_ms"]
    assert out["fsyncs"] == N and out["records"] == N and out["queued"] == N
    assert out["acked"] == N and out["pending_after"] == 0
    assert out["fs"]["fstype"] != "?"
    assert list(tmp_path.iterdir()) == []       # its temporary folder is gone


def test_bench_persist_queue_quick(tmp_path):
    pytest.importorskip("persistqueue")
    out = bench_saf.bench_persist_queue(N, str(tmp_path))
    assert out["persist_queue_version"]
    assert any("journal_mode" in p.lower() for p in out["pq_pragmas_in_source"])
    for name in ("safqueue", "pq_default", "pq_full"):
        run = out[name]
        _positive(run, "enqueue_median_ms", "enqueue_p99_ms", "dequeue_ack_median_ms",
                  "dequeue_ack_p99_ms", "enqueue_per_s", "records_per_s")
        assert run["records"] == N and run["acked"] == N and run["left"] == 0, name
        assert run["journal_mode"] == "wal"
    assert out["safqueue"]["synchronous"] == "FULL"
    assert out["pq_full"]["synchronous"] == "FULL"
    _positive(out, "saf_over_pq_default_enqueue", "saf_over_pq_full_drain")
    assert list(tmp_path.iterdir()) == []


def test_bench_drain_quick(tmp_path):
    out = bench_saf.bench_drain(N, str(tmp_path))
    assert out["n"] == N and out["left"] == 0 and out["booked"] == N
    assert out["stopped_at_limit_s"] is None and out["per_second"] > 0
    assert list(tmp_path.iterdir()) == []


def test_drain_is_bounded():
    assert bench_saf.drain_limit_s(200) == 120
    assert bench_saf.drain_limit_s(10000) == 200


def test_main_quick_prints_the_table(tmp_path, capsys):
    assert bench_saf.main(["--quick", "--folder", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for figure in ("write 200 B + fsync", "SafQueue.add()", "SafQueue.ack()", "ratios",
                   "file system:"):
        assert figure in text
