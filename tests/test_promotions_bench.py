"""The promotions bench (issue 16) runs, decides again only when lines change, and a
200-line cart with 500 open promotions re-prices within the budget (with room: this
machine is shared)."""
from tools.bench import promotions as bench


def test_quick_bench_prices_a_full_cart_within_budget(capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "a change at 200 lines" in out and "load average" in out


def test_figures_of_a_short_run():
    got = bench.bench(lines=200, changes=40)
    assert got["lines"] == 200 and got["promoted"] > 100 and got["promos"] > 0
    assert got["decided"] < got["changes"]      # a cart discount needs no new decision
    assert got["p95"] < 4 * bench.BUDGET_MS
