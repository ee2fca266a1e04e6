"""tools/bench/catalogue.py keeps working: a quick run gives sane figures (no timing
asserts: the figures are the bench's to report, not the test's to judge)."""
from tools.bench import catalogue as bench_catalogue
from firmware.retail import barcode


def test_the_bench_csv_is_a_catalogue_the_import_takes():
    data, codes = bench_catalogue.make_csv(100)
    text = data.decode("utf-8").splitlines()
    assert len(text) == 101 and len(codes) == 100 and len(set(codes)) == 100
    assert all(barcode.classify(c).ok for c in codes)
    assert text[10].split(",")[1].count("|") == 1          # item 10 has two codes
    assert ",kg," in text[50]                               # item 50 is weighed


def test_quick_run_reports_every_figure(tmp_path, capsys):
    assert bench_catalogue.main(["--quick", "--folder", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for figure in ("import 2,000 lines", "lines/s", "catalogue.db", "peak memory of the import",
                   "classify + find_by_barcode",
                   "code in no item", "find_by_plu", "resident memory", "load average"):
        assert figure in text, figure
    assert list(tmp_path.iterdir()) == []          # its temporary folder is gone


def test_parts_return_what_they_measured(tmp_path):
    imported = bench_catalogue.bench_import(300, str(tmp_path))
    assert imported["n"] == 300 and imported["seconds"] > 0 and imported["db_bytes"] > 0
    assert imported["peak_kib"] > 0
    looked = bench_catalogue.bench_lookups(imported["path"], imported["codes"], 20)
    assert looked["scans"] == 20
    assert looked["scan_p99_ms"] >= looked["scan_median_ms"] > 0
    mem = bench_catalogue.bench_memory(imported["path"], 300)
    assert mem["rss_kib"] > 0 and mem["base_kib"] > 0 and mem["hwm_kib"] >= mem["rss_kib"]
