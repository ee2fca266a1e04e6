"""tools/bench/keys.py keeps working: a quick run's figures are sane (no timing asserts)
and the way the terminal keeps its DUKPT state leaves no used key on the disk."""
from tools.bench import keys as bench_keys


def test_dukpt_state_ways_and_what_they_leave(tmp_path):
    out = bench_keys.bench_dukpt_state(12, str(tmp_path))
    for label in ("sealed_file", "secure_sqlite", "plain_sqlite"):
        assert out[label]["median_ms"] > 0 and out[label]["p90_ms"] >= out[label]["median_ms"]
        assert out[label]["used"] == 12             # one used key a PIN
    assert out["sealed_file"]["used_keys_left"] == 0
    assert out["secure_sqlite"]["used_keys_left"] == 0
    # the old way, for the record: every used key was still in the WAL
    assert out["plain_sqlite"]["used_keys_left"] == 12
    assert list(tmp_path.iterdir()) == []


def test_quick_run_prints_every_figure(capsys):
    assert bench_keys.main(["--quick"]) == 0
    text = capsys.readouterr().out
    for words in ("sealed_file", "secure_sqlite", "secure sqlite / sealed file",
                  "scrypt_pepper_2^14", "key root + unwrap"):
        assert words in text
