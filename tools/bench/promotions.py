"""Promotions (issue 16): `python -m tools.bench.promotions [--quick]`.

What a cashier waits for after each change to a big cart: a 200-line cart (1,000 items
in 40 categories) with 500 promotions open at once, each change (a quantity typed, a
line voided) priced again through Cart._compute and the Pricer as on the terminal
(firmware/retail/promotions.py: index by PLU and category, the decision rule's heap).

The 500 promotions: 400 on items (1 to 3 PLUs each: percent, amount off, fixed price,
buy 2 get 1), 60 on categories (percent, cheapest of 3 free), 20 on the whole cart (an
amount off above a minimum, a percent), 20 points multipliers, all open now; a shop
rarely has more than a handful on the whole cart, each of which touches every line.

Printed: the median and p95 of a change at 200 lines (ms), what the decision alone
costs when nothing is remembered, and the load average before and after (timing on a
busy machine says little). Exit status 1 when the p95 is above the 50 ms budget.
"""
import argparse
import os
import random
import statistics
import sys
import time

from tools.bench import time_limit

BUDGET_MS = 50.0
NOW = (2026, 5, 4, 12, 0, 0)


def make_items(n=1000, categories=40):
    items = []
    for i in range(1, n + 1):
        items.append({"id": i, "plu": i, "name_en": "Item %d" % i, "name_zh": "",
                      "price": 100 + (i * 37) % 2900, "tax_rate": 13000 if i % 3 else 9000,
                      "unit": "each", "category": i % categories})
    return items


def make_rules(items, rnd, n=500):
    from firmware.retail.promotions import parse_rule
    raws = []
    kinds = ([("items", "percent_off")] * 150 + [("items", "amount_off")] * 100 +
             [("items", "price")] * 50 + [("items", "buy")] * 100 +
             [("categories", "percent_off")] * 40 + [("categories", "cheapest_free")] * 20 +
             [("cart", "amount_off")] * 10 + [("cart", "percent_off")] * 10 +
             [("points", "points_x")] * 20)
    for k in range(n):
        scope, reward = kinds[k % len(kinds)]
        raw = {"id": "P%d" % k, "name_en": "Promotion %d" % k, "hours": "08:00-22:00",
               "from": "2026-01-01", "to": "2026-12-31"}
        if scope == "items":
            raw["plus"] = rnd.sample(range(1, len(items) + 1), rnd.randint(1, 3))
        elif scope == "categories" or scope == "points":
            raw["categories"] = ["%d" % rnd.randrange(40)]
        else:
            raw["cart"] = True
        if reward == "percent_off":
            raw["percent_off"] = "%d" % rnd.choice((5, 10, 15, 20))
        elif reward == "amount_off":
            raw["amount_off"] = "0.%02d" % rnd.randint(10, 90)
            if scope == "cart":
                raw["amount_off"] = "%d.00" % rnd.randint(5, 20)
                raw["min_amount"] = "%d.00" % rnd.randint(50, 300)
        elif reward == "price":
            raw["price"] = "%d.%02d" % (rnd.randint(1, 20), rnd.randint(0, 99))
        elif reward == "buy":
            raw["buy"], raw["get"] = 2, 1
        elif reward == "cheapest_free":
            raw["cheapest_free"] = 3
        else:
            raw["points_x"] = "2"
        if scope == "cart" and reward == "percent_off":
            raw["min_amount"] = "%d.00" % rnd.randint(100, 500)
        rule, problems = parse_rule(raw, 2, k)
        assert not problems, problems
        if rule["scope"] == "categories":
            rule["categories"] = [int(c) for c in rule["categories"]]
        raws.append(rule)
    return raws


def _p95(samples):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def bench(lines=200, changes=300, rules_n=500, seed=16):
    from firmware.retail.cart import Cart
    from firmware.retail.promotions import Pricer
    rnd = random.Random(seed)
    items = make_items()
    by_id = {it["id"]: it["category"] for it in items}
    rules = make_rules(items, rnd, rules_n)
    pricer = Pricer(rules, lambda: NOW, by_id.get)
    cart = Cart("CNY", limits={"max_lines": lines + 10, "max_total": 10 ** 9,
                               "max_line_amount": 10 ** 8})
    cart.set_pricer(pricer)
    fill = []
    for k in range(lines):
        t0 = time.perf_counter()
        cart.add_item(rnd.choice(items), quantity=rnd.randint(1, 4))
        fill.append((time.perf_counter() - t0) * 1000.0)
    samples = []
    decided_before = pricer.calls
    for k in range(changes):
        index = rnd.randrange(lines)
        line = cart.lines[index]
        t0 = time.perf_counter()
        if k % 10 == 9 and not line.void:
            cart.void(index)
        elif not line.void:
            cart.set_quantity(index, 1 + (line.quantity % 5))
        else:
            cart.set_discount("amount" if k % 2 else None, 1)
        samples.append((time.perf_counter() - t0) * 1000.0)
    decided = pricer.calls - decided_before
    alone = []
    for k in range(50):
        pricer._last = None             # nothing remembered: the whole decision
        t0 = time.perf_counter()
        pricer(cart)
        alone.append((time.perf_counter() - t0) * 1000.0)
    return {"fill_median": statistics.median(fill), "fill_p95": _p95(fill),
            "median": statistics.median(samples), "p95": _p95(samples),
            "decide_median": statistics.median(alone), "decide_p95": _p95(alone),
            "changes": changes, "decided": decided,
            "promos": cart.totals["promo_discounts"], "lines": len(cart.lines),
            "promoted": sum(1 for l in cart.lines if l.promo)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.promotions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    changes = 60 if args.quick else 300
    load_before = os.getloadavg()
    print("promotions (issue 16): a 200-line cart, 500 open promotions, %d changes "
          "(python %s, %d CPUs)" % (changes, sys.version.split()[0], os.cpu_count() or 0))
    with time_limit(300, "the promotions bench"):
        out = bench(changes=changes)
    load_after = os.getloadavg()
    print("  filling to 200 lines, each add       median %6.2f ms  p95 %6.2f ms"
          % (out["fill_median"], out["fill_p95"]))
    print("  a change at 200 lines (re-priced)    median %6.2f ms  p95 %6.2f ms  (%d of %d "
          "changes decided again)" % (out["median"], out["p95"], out["decided"], out["changes"]))
    print("  the decision alone, nothing reused   median %6.2f ms  p95 %6.2f ms"
          % (out["decide_median"], out["decide_p95"]))
    print("  %d of %d lines with a promotion, %d minor units off"
          % (out["promoted"], out["lines"], out["promos"]))
    print("  load average before %.2f, after %.2f (1 min)" % (load_before[0], load_after[0]))
    if out["p95"] > BUDGET_MS:
        print("  OVER BUDGET: p95 %.1f ms > %.0f ms" % (out["p95"], BUDGET_MS))
        return 1
    return 0


if __name__ == "__main__":
    from tools.bench import run_main
    sys.exit(run_main(main, name="promotions bench"))
