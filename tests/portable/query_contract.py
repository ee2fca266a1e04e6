"""What every journal answers to newest(**criteria), latest(n, below_id=...), find and
save_z (firmware/payments/journal.py): the memory journal here and under MicroPython
(tests/portable/test_journal_memory.py), the SQLite one through its indexes
(tests/test_journal_query.py). Each answer is checked against a plain filter of the
whole journal written out below, not against the journals' own matches()."""
from firmware.payments.journal import ZExists, record

KINDS = ("sale", "sale", "sale", "refund", "void")
STATES = ("approved", "approved", "declined", "reversed", "voided", "failed")
AMOUNTS = (100, 250, 999, 1250, 5000, 12345)
LAST4 = ("", "", "1111", "4242", "0119")


class Lcg:
    """The same numbers under both Pythons (MicroPython's random differs)."""

    def __init__(self, seed):
        self.x = seed

    def pick(self, seq):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return seq[(self.x >> 8) % len(seq)]


def fill(j, n, seed=14):
    """n records over 9 days and 5 batches: cash without card or STAN, cards with
    both, some with a reversal's STAN, two currencies; some updated after they were
    written. The ids, oldest first."""
    rnd = Lcg(seed)
    ids = []
    for i in range(n):
        last4 = rnd.pick(LAST4)
        card = last4 != ""
        day = 1 + i * 9 // n
        minute = (i * 37) % 1440
        rec = record(kind=rnd.pick(KINDS), state=rnd.pick(STATES),
                     method="card" if card else "cash", amount=rnd.pick(AMOUNTS),
                     currency=rnd.pick(("USD", "USD", "USD", "CNY")), last4=last4,
                     pan_masked=("411111******" + last4) if card else "",
                     stan=("%06d" % (i % 700 + 1)) if card else "",
                     utc="2026-06-%02dT%02d:%02d:00Z" % (day, minute // 60, minute % 60),
                     tz_min=rnd.pick((480, 0, -300)), batch=1 + i * 5 // n,
                     operator=("1", "7", "")[i % 3])
        ids.append(j.add(rec))
        if card and i % 11 == 0:            # reversed: its reversal's STAN kept
            j.update(ids[-1], state="reversed", rev_stan="%06d" % (i % 300 + 900))
    return ids


def _cases():
    """(criteria, the plain filter of a record) for each criterion and a few together."""
    return (
        ({}, lambda r: True),
        ({"amount": 999}, lambda r: r["amount"] == 999),
        ({"amount": 77}, lambda r: False),
        ({"amount": 1250, "currency": "CNY"},
         lambda r: r["amount"] == 1250 and r["currency"] == "CNY"),
        ({"last4": "4242"}, lambda r: r["last4"] == "4242"),
        ({"last4": ""}, lambda r: r["last4"] == ""),
        ({"stan": "000042"}, lambda r: r["stan"] == "000042" or r["rev_stan"] == "000042"),
        ({"stan": "000950"}, lambda r: r["stan"] == "000950" or r["rev_stan"] == "000950"),
        ({"utc_from": "2026-06-03T10:00:00Z", "utc_to": "2026-06-05T14:00:00Z"},
         lambda r: "2026-06-03T10:00:00Z" <= r["utc"] < "2026-06-05T14:00:00Z"),
        ({"utc_from": "2026-06-08"}, lambda r: r["utc"] >= "2026-06-08"),
        ({"utc_to": "2026-06-02"}, lambda r: r["utc"] < "2026-06-02"),
        ({"kinds": ("refund", "void")}, lambda r: r["kind"] in ("refund", "void")),
        ({"kinds": ()}, lambda r: False),
        ({"states": ("reversed", "declined")}, lambda r: r["state"] in ("reversed", "declined")),
        ({"state": "approved", "batch": 3}, lambda r: r["state"] == "approved" and r["batch"] == 3),
        ({"kind": "sale", "last4": "1111", "amount": 5000},
         lambda r: r["kind"] == "sale" and r["last4"] == "1111" and r["amount"] == 5000),
        ({"batch": 2, "utc_from": "2026-06-03", "kinds": ("sale",)},
         lambda r: r["batch"] == 2 and r["utc"] >= "2026-06-03" and r["kind"] == "sale"),
        # the limits' day of one operator and the anomaly checks' card (issue 15)
        ({"operator": "7", "utc_from": "2026-06-03", "utc_to": "2026-06-04",
          "kinds": ("sale",), "states": ("approved",)},
         lambda r: r["operator"] == "7" and "2026-06-03" <= r["utc"] < "2026-06-04"
         and r["kind"] == "sale" and r["state"] == "approved"),
        ({"operator": ""}, lambda r: r["operator"] == ""),
        ({"pan_masked": "411111******4242"}, lambda r: r["pan_masked"] == "411111******4242"),
        ({"pan_masked": "", "kind": "refund"}, lambda r: r["pan_masked"] == "" and r["kind"] == "refund"),
    )


def check_query(make, n):
    """newest(), find(), latest() and last() of each case equal the plain filter over
    the whole journal (find() without criteria), record for record."""
    j = make()
    fill(j, n)
    everything = j.find()
    assert len(everything) == n
    middle = everything[n // 2]["id"]
    for criteria, keep in _cases():
        want = [r for r in everything if keep(r)]
        got = list(j.newest(**criteria))
        assert got == list(reversed(want)), (criteria, len(got), len(want))
        assert j.find(**criteria) == want, criteria
        assert j.last(**criteria) == (want[-1] if want else None), criteria
        assert j.totals(**criteria) == (len(want), sum(r["amount"] for r in want)), criteria
        below = [r for r in want if r["id"] < middle]
        assert list(j.newest(below_id=middle, **criteria)) == list(reversed(below)), criteria
        # a list's pages: 7 at a time, each from below the last one shown
        pages, at = [], None
        while True:
            page = j.latest(7, below_id=at, **criteria)
            pages.extend(page)
            if len(page) < 7:
                break
            at = page[-1]["id"]
        assert pages == list(reversed(want)), criteria
    return j


def check_one_z_a_batch(make):
    """save_z keeps one Z a batch: a second for the batch raises ZExists, stores
    nothing, and another batch's goes in."""
    j = make()
    first = j.save_z(4, "2026-06-30T20:00:00Z", '{"batch": 4}')
    try:
        j.save_z(4, "2026-06-30T21:00:00Z", '{"batch": 4, "again": 1}')
        raise AssertionError("a second Z of batch 4 was kept")
    except ZExists as exc:
        assert exc.batch == 4 and "batch 4" in str(exc)
    assert [z["id"] for z in j.z_reports(batch=4)] == [first]
    assert j.z_reports(batch=4)[0]["doc"] == '{"batch": 4}'
    other = j.save_z(5, "2026-07-01T20:00:00Z", '{"batch": 5}')
    assert j.last_z()["id"] == other
    return j
