"""tools/bench/reports.py keeps working: a quick run prints every figure, the journal it
builds is what it says, the fsync counter reads strace's lines right (no timing asserts:
the figures are the bench's to report, not the test's to judge)."""
import shutil

from tools.bench import reports as bench_reports


def test_quick_run_prints_every_figure(tmp_path, capsys):
    assert bench_reports.main(["--quick", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for figure in ("journal: 950 records in", "index on txns(batch):",
                   "X report, a batch of 50 records: median", "X report, a batch of 300 records",
                   "on screen (figures and", "panel rows", "the paper's", "read", "summarize",
                   "Z report (make_z, no print), a batch of 50 records: median",
                   "Z report (make_z, no print), a batch of 300 records",
                   "cash sale: 1.0 journal records a sale", "card sale (signature):",
                   "card sale (PIN):", "B of rows and index entries a sale", "journal WAL written",
                   "load average before", "file system:"):
        assert figure in text, (figure, text)
    if shutil.which("strace"):
        assert text.count("fsyncs a sale") == 3 and "journal.db-wal" in text, text
    else:
        assert text.count("fsyncs: not counted (no strace") == 3
    assert list(tmp_path.iterdir()) == []           # its temporary folders are gone


def test_the_journal_holds_the_batches_it_says(tmp_path):
    from drivers.journal_sqlite import SQLiteJournal
    sizes = dict(bench_reports.QUICK)
    path = str(tmp_path / "journal.db")
    open_batch, batches, rows = bench_reports.build_journal(path, sizes)
    assert rows == 6 * 50 + 2 * 300 + 50
    assert len(batches["small"]) == 6 and len(batches["big"]) == 2 and batches["open"] == [open_batch]
    assert open_batch == 9
    journal = SQLiteJournal(path, mac_key=b"bench-journal-mac-key-0123456789")
    try:
        assert journal.counter("batch") == open_batch
        day = journal.find(batch=batches["big"][0])
        assert len(day) == 300
        kinds = {(r["kind"], r["method"], r["state"]) for r in day}
        assert ("sale", "cash", "approved") in kinds and ("sale", "card", "approved") in kinds
        assert ("sale", "qr", "approved") in kinds and ("void", "cash", "approved") in kinds
        assert any(r["cart"] for r in day)
        assert journal.damaged() == []              # every record's MAC holds
    finally:
        journal.close()


def test_fsyncs_are_counted_between_the_markers_on_the_terminals_files(tmp_path):
    data = tmp_path / "terminal"
    data.mkdir()
    trace = tmp_path / "strace.txt"
    trace.write_text(
        "100 fsync(3</elsewhere/ledger.db>) = 0\n"
        "101 fsync(5<%(d)s/journal.db-wal>) = 0\n"          # before the first marker
        "101 getppid() = 99\n"
        "101 fsync(5<%(d)s/journal.db-wal>) = 0\n"
        "102 fdatasync(6<%(d)s/handpos.db-wal>) = 0\n"
        "100 fsync(3</elsewhere/ledger.db>) = 0\n"          # the host's, not the terminal's
        "101 fsync(7<%(d)s/keys>) = 0\n"
        "101 fsync(5<%(d)s/journal.db-wal>) = 0\n"
        "101 getppid() = 99\n"
        "101 fsync(5<%(d)s/journal.db-wal>) = 0\n" % {"d": data})
    counts, markers = bench_reports.count_syncs(str(trace), str(data))
    assert markers == 2
    assert counts == {"journal.db-wal": 2, "handpos.db-wal": 1, "keys": 1}
