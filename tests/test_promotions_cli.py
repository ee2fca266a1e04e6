"""`handpos promotions import FILE | list` (issue 16) on a terminal's data folder: real
catalogue.db, its MACs, the board's key root; bad files refused with a line per
problem and nothing half-imported."""
import json

import pytest

from drivers.catalogue_sqlite import open_catalogue
from tools import catalogue_csv, cli, promotions_file

NO_MFA = "[mfa]\nactions = []\n"


@pytest.fixture
def terminal(tmp_path, capsys):
    from board import datadir
    from board.configfile import load_profile
    data = tmp_path / "data"
    cfg = tmp_path / "handpos.toml"
    cfg.write_text('[money]\ncurrency = "CNY"\n[storage]\ndata_dir = "%s"\n%s' % (data, NO_MFA))

    class T:
        dir = str(data)

        def run(self, *words):
            capsys.readouterr()
            status = cli.main(["promotions"] + list(words) + ["--config", str(cfg),
                                                              "--board", "sim"])
            out = capsys.readouterr()
            return status, out.out, out.err

        def open(self):
            return open_catalogue(self.dir, self.key, {"money": {"currency": "CNY"}})

        def file(self, promotions, name="promos.json", **top):
            path = tmp_path / name
            doc = dict(top)
            doc["promotions"] = promotions
            path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
            return str(path)
    t = T()
    profile = load_profile("sim")
    dd = datadir.prepare(profile, {"storage": {"data_dir": str(data)},
                                   "terminal": {"id": "HP000001"}}, lambda line: None)
    t.key = dd.keys.key("data")
    config = {"money": {"currency": "CNY"}, "retail": {"allow_negative_stock": True,
                                                       "scale_rules": None}}
    catalogue_csv.load_demo(t.dir, t.key, config)
    return t


def test_the_demo_file_imports_and_lists(terminal):
    status, out, err = terminal.run("import", promotions_file.DEMO)
    assert status == 0, err
    assert "3 promotions imported" in out
    status, out, err = terminal.run("list")
    assert status == 0, err
    assert "SNACK20" in out and "07:00-23:00" in out and "category Snacks" in out, out
    assert "COLA21" in out and "buy 2 get 1 on PLU 2" in out, out
    cat = terminal.open()
    assert [r["id"] for r in cat.promotions()] == ["SNACK20", "COLA21", "DAIRYX2"]
    assert cat.promotions()[0]["categories"] == [2]      # Snacks, by the catalogue's id
    cat.close()


def test_a_bad_file_is_refused_whole_with_a_line_per_problem(terminal):
    assert terminal.run("import", promotions_file.DEMO)[0] == 0
    path = terminal.file([
        {"id": "OLD", "name_en": "Spring sale", "plus": [1], "percent_off": "10",
         "from": "2020-03-01", "to": "2020-03-31"},
        {"id": "W1", "name_en": "Water 10%", "plus": [1], "percent_off": "10"},
        {"id": "W2", "name_en": "Water 1 off", "plus": [1, 3], "amount_off": "1.00"},
        {"id": "BAD", "name_en": "Typo", "plus": [999], "percent_off": "ten"},
        {"id": "CAT", "name_en": "Toys", "categories": ["Toys"], "percent_off": "5"},
    ])
    status, out, err = terminal.run("import", path)
    assert status == 2
    lines = err.splitlines()
    assert "promotion 1 (OLD): expired on 2020-03-31" in err, err
    assert "promotions 2 (W1) and 3 (W2) overlap on PLU 1" in err, err
    assert "promotion 4 (BAD): percent_off 'ten': not a number" in err, err
    assert "promotion 4 (BAD): PLU 999 is not in the catalogue" not in err  # one at a time
    assert "promotion 5 (CAT): no category 'Toys' in the catalogue" in err, err
    assert lines[-1].endswith("4 problems; nothing was imported: correct the file and "
                              "import it again"), lines
    cat = terminal.open()                   # the demo promotions are still all there
    assert [r["id"] for r in cat.promotions()] == ["SNACK20", "COLA21", "DAIRYX2"]
    cat.close()


@pytest.mark.parametrize("data, says", [
    (b"\xff\xfe{", "not UTF-8"),
    (b"{\"promotions\": [", "not JSON"),
    (b"[]", "the file is not {\"promotions\": [ ... ]}"),
    (b"{\"promotions\": [], \"currency\": \"USD\"}", "in USD and the terminal's currency is CNY"),
])
def test_files_that_are_not_promotions_say_why(terminal, tmp_path, data, says):
    path = tmp_path / "x.json"
    path.write_bytes(data)
    status, out, err = terminal.run("import", str(path))
    assert status == 2 and says in err, err


def test_an_empty_list_clears_the_promotions_and_a_damaged_row_is_not_given(terminal):
    assert terminal.run("import", promotions_file.DEMO)[0] == 0
    cat = terminal.open()
    cat.db.execute("UPDATE promotions SET body=replace(body, '20000', '90000') "
                   "WHERE id='SNACK20'")
    cat.db.commit()
    assert [r["id"] for r in cat.promotions()] == ["COLA21", "DAIRYX2"]
    assert ("promotions", "SNACK20") in [(r[0], r[1]) for r in cat.damaged()]
    cat.close()
    assert terminal.run("import", terminal.file([]))[0] == 0
    status, out, err = terminal.run("list")
    assert status == 0 and "none" in out
