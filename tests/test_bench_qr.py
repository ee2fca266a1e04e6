"""tools/bench/qr.py keeps working: a quick run prints every figure, and its parts return
what they measured (no timing asserts: the figures are the bench's to report, not the
test's to judge)."""
from tools.bench import qr as bench_qr


def test_quick_run_prints_every_figure(capsys):
    assert bench_qr.main(["--quick"]) == 0
    text = capsys.readouterr().out
    for figure in ("QR payment, scan -> pay request at the acquirer: median",
                   "(5 payments after the first); the first, opening the connection:",
                   "(1 TLS connection accepted by the acquirer in all)",
                   "of which scan -> code read by the scanner driver",
                   "QR payment, acquirer's answer -> APPROVED frame: median",
                   "QR frame, 30-character URL (version 2, 2 px a module), 20 renders",
                   "QR frame, 60-character URL (version 4, 1 px a module), 20 renders",
                   "new code -> frame pushed median", "same code redrawn median",
                   "segno symbol and matrix alone median", "load average before"):
        assert figure in text, (figure, text)


def test_payments_return_what_they_measured():
    pay = bench_qr.bench_payments(3)
    assert pay["payments"] == 3 and pay["connections"] == 1 and pay["first_opened"]
    assert pay["wire_p99_ms"] >= pay["wire_median_ms"] > 0
    assert pay["frame_p99_ms"] >= pay["frame_median_ms"] > 0
    assert pay["wire_median_ms"] > pay["decoded_median_ms"] > 0
    assert pay["first_wire_ms"] > 0 and pay["first_frame_ms"] > 0


def test_drawing_returns_what_it_measured():
    draw = bench_qr.bench_drawing(5)
    assert draw["renders"] == 5
    assert (draw["version_30"], draw["scale_30"]) == (2, 2)
    assert draw["scale_60"] == 1 and draw["version_60"] > 2
    for name in ("fresh", "same", "segno"):
        for length in (30, 60):
            assert draw["%s_%d_p99_ms" % (name, length)] >= draw["%s_%d_median_ms"
                                                                % (name, length)] > 0


def test_code_urls_have_their_length_and_differ():
    urls = {bench_qr.url_of(n, i) for n in (30, 60) for i in range(50)}
    assert len(urls) == 100
    assert {len(u) for u in urls} == {30, 60}
