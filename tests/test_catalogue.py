"""catalogue.db (drivers/catalogue_sqlite.py): the catalogue contract on real SQLite, its
integrity checks and storage faults; and `handpos catalogue import|export|movements`
(tools/catalogue_csv.py) through the real command line, on a data folder with keys."""
import io
import os
import sqlite3
import stat

import pytest

from drivers.catalogue_sqlite import CurrencyMismatch, SQLiteCatalogue, open_catalogue
from firmware.core.store import StorageFault
from firmware.retail import barcode
from firmware.retail.catalogue import ItemDamaged
from tests.portable import catalogue_contract as contract
from tools import catalogue_csv as cc
from tools import cli

KEY = bytes(range(32))
HEADER = "plu,barcodes,name_en,name_zh,category,category_zh,price,tax_rate,unit,stock,low_stock,active\n"


@pytest.fixture
def make(tmp_path):
    made = []

    def make(allow_negative_stock):
        cat = SQLiteCatalogue(str(tmp_path / ("c%d.db" % len(made))), KEY,
                              allow_negative_stock=allow_negative_stock, currency="USD",
                              now=contract.fixed_now)
        made.append(cat)
        return cat
    yield make
    for cat in made:
        cat.close()


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.__name__)
def test_contract_on_sqlite(make, check):
    check(make)


def test_wal_full_sync_private_files_and_reopen(tmp_path):
    old = os.umask(0o022)           # whatever the process umask, the files stay private
    try:
        path = str(tmp_path / "catalogue.db")
        cat = SQLiteCatalogue(path, KEY, currency="CNY")
        water = cat.add_item(1, "Water", 200, barcodes=[contract.WATER])
        cat.record_movement(water, 5, "received", "7", "PO-9")
        assert cat.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cat.db.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL
        for name in ("catalogue.db", "catalogue.db-wal", "catalogue.db-shm"):
            assert stat.S_IMODE(os.stat(str(tmp_path / name)).st_mode) == 0o600, name
        cat.close()
    finally:
        os.umask(old)
    cat = SQLiteCatalogue(path, KEY, currency="CNY")
    assert cat.find_by_barcode(contract.WATER)["name_en"] == "Water"
    assert cat.stock(water) == 5 and cat.selftest() == (True, "ok")
    cat.close()
    with pytest.raises(CurrencyMismatch) as err:
        SQLiteCatalogue(path, KEY, currency="USD")
    assert "CNY" in err.value.detail and "USD" in err.value.detail


def test_movement_and_stock_change_are_one_transaction(tmp_path):
    cat = SQLiteCatalogue(str(tmp_path / "c.db"), KEY)
    water = cat.add_item(1, "Water", 200)
    cola = cat.add_item(2, "Cola", 350)
    cat.record_movement(water, 10, "received", "7", "")
    # the movement's row cannot be written: its stock change must not stay either
    cat.db.execute("CREATE TRIGGER no_sales BEFORE INSERT ON movements WHEN NEW.reason='sale' "
                   "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(sqlite3.IntegrityError):
        cat.record_movement(water, -2, "sale", "3", "000001")
    with pytest.raises(sqlite3.IntegrityError):      # a sale's lines: none of them
        cat.record_movements([(cola, 1, "received"), (water, -1, "sale")], "3", "000002")
    assert cat.stock(water) == 10 and cat.stock(cola) == 0
    assert len(cat.movements()) == 1
    cat.close()


def _tamper(path, sql, *args):
    raw = sqlite3.connect(path)
    raw.execute(sql, args)
    raw.commit()
    raw.close()


def test_an_altered_row_is_never_sold_and_is_flagged(tmp_path):
    path = str(tmp_path / "c.db")
    cat = SQLiteCatalogue(path, KEY)
    drinks = cat.add_category("Drinks")
    water = cat.add_item(1, "Water", 200, category=drinks, barcodes=[contract.WATER])
    cola = cat.add_item(2, "Cola", 350, category=drinks, barcodes=[contract.COLA])
    chips = cat.add_item(3, "Chips", 750, barcodes=[contract.CHIPS])
    cat.record_movement(chips, 4, "received", "7", "")
    _tamper(path, "UPDATE items SET price=1 WHERE id=?", water)          # a cheaper water
    _tamper(path, "UPDATE barcodes SET item=? WHERE code=?", chips, contract.COLA)
    _tamper(path, "UPDATE stock SET on_hand=400 WHERE item=?", chips)
    with pytest.raises(ItemDamaged) as err:
        cat.find_by_barcode(contract.WATER)
    assert err.value.item_id == water
    with pytest.raises(ItemDamaged):
        cat.find_by_plu(1)
    with pytest.raises(ItemDamaged):                 # the cola code now names the chips
        cat.find_by_barcode(contract.COLA)
    with pytest.raises(ItemDamaged):
        cat.set_price(water, 250, "7")               # never re-sealed as it stands
    with pytest.raises(ItemDamaged):
        cat.stock(chips)
    with pytest.raises(ItemDamaged):
        cat.record_movement(chips, -1, "sale", "3", "")
    assert [i["id"] for i in cat.items_in(drinks)] == [cola]     # browsing goes on
    assert cat.find_by_plu(2)["price"] == 350
    flagged = {(t, r) for t, r, utc, what in cat.damaged()}
    assert flagged == {("items", str(water)), ("barcodes", contract.COLA),
                       ("stock", str(chips))}
    _tamper(path, "UPDATE items SET price=200 WHERE id=?", water)        # put back: it holds
    assert cat.find_by_barcode(contract.WATER)["price"] == 200
    cat.close()
    # without the key's MAC (another key) nothing passes
    other = SQLiteCatalogue(path, bytes(32))
    with pytest.raises(ItemDamaged):
        other.find_by_plu(2)
    other.close()


def test_full_disk_is_a_storage_fault_and_writes_nothing(tmp_path):
    from tests.conftest import SmallDisk
    disk = SmallDisk(tmp_path / "card")
    try:
        faults = []
        cat = SQLiteCatalogue(os.path.join(disk.path, "catalogue.db"), KEY,
                              on_fault=faults.append)
        water = cat.add_item(1, "Water", 200)
        cat.record_movement(water, 10, "received", "7", "")
        disk.fill()
        with pytest.raises(StorageFault) as err:
            for n in range(200):             # the WAL has some room: fill it too
                cat.record_movement(water, -1, "sale", "3", "%06d" % n)
                cat.set_price(water, 200 + n, "7")
        assert err.value.kind == "full" and err.value.part == "catalogue"
        assert faults and faults[-1] is err.value
        before = cat.stock(water), len(cat.movements())
        disk.free()
        cat.probe()
        assert (cat.stock(water), len(cat.movements())) == before
        assert before[0] == 10 - (before[1] - 1)       # every movement has its stock
        cat.record_movement(water, 1, "refund", "3", "x")
        assert cat.stock(water) == before[0] + 1
        cat.close()
    finally:
        disk.umount()


# -- the command line -----------------------------------------------------------------
NO_MFA = "[mfa]\nactions = []\n"


@pytest.fixture
def terminal(tmp_path, capsys):
    """A data folder with a terminal's keys (as its first start makes them) and a
    configuration file; run(...) runs `handpos catalogue ...` and returns (status,
    stdout, stderr)."""
    from board import datadir
    from board.configfile import load_profile
    data = tmp_path / "data"
    cfg = tmp_path / "handpos.toml"
    # [mfa] without "export": the product's asks a code for catalogue export and
    # movements (tests/test_cli_mfa.py), not the subject here
    cfg.write_text('[money]\ncurrency = "CNY"\n[storage]\ndata_dir = "%s"\n%s' % (data, NO_MFA))

    class T:
        dir = str(data)
        config_path = str(cfg)

        def config(self, **retail):
            text = '[money]\ncurrency = "CNY"\n[storage]\ndata_dir = "%s"\n%s' % (data, NO_MFA)
            if retail:
                text += "[retail]\n" + "".join("%s = %s\n" % kv for kv in retail.items())
            cfg.write_text(text)

        def run(self, *words, board="sim"):
            capsys.readouterr()
            status = cli.main(["catalogue"] + list(words) + ["--config", str(cfg)] +
                              (["--board", board] if board else []))
            out = capsys.readouterr()
            return status, out.out, out.err

        def open(self, allow_negative_stock=True):
            return open_catalogue(self.dir, self.key, {"money": {"currency": "CNY"},
                                                       "retail": {"allow_negative_stock":
                                                                  allow_negative_stock}})
    t = T()
    profile = load_profile("sim")
    config = {"storage": {"data_dir": str(data)}, "terminal": {"id": "HP000001"}}
    dd = datadir.prepare(profile, config, lambda line: None)
    t.key = dd.keys.key("data")
    return t


def _codes(n, start=0):
    """n valid, distinct EAN-13 codes."""
    out = []
    for i in range(start, start + n):
        body = "690%09d" % i
        out.append(body + str(barcode.check_digit(body)))
    return out


def _big_csv(path, n, bad=()):
    """n item lines (PLU 1..n); the lines in bad get a wrong price or check digit."""
    codes = _codes(n)
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER)
        for i in range(n):
            line = i + 2
            price, code = "12.80", codes[i]
            if line == bad[0]:
                price = "12.8O"                     # a letter O in the price
            if line == bad[1]:
                code = code[:-1] + str((int(code[-1]) + 1) % 10)
            f.write("%d,%s,Item %d,商品%d,Group %d,组%d,%s,13,each,%d,5,1\n"
                    % (i + 1, code, i + 1, i + 1, i % 12, i % 12, price, i % 50))
    return codes


def test_10000_lines_with_two_bad_lines_import_nothing_then_partial_imports_9998(
        terminal, tmp_path):
    path = str(tmp_path / "big.csv")
    _big_csv(path, 10000, bad=(1234, 8766))
    status, out, err = terminal.run("import", path, "--data", terminal.dir)
    assert status == 2
    lines = err.splitlines()
    assert lines[0].startswith("handpos catalogue: line 1234: bad price '12.8O'"), lines
    assert lines[1].startswith("handpos catalogue: line 8766: bad barcode '"), lines
    assert "wrong check digit" in lines[1]
    assert "2 bad lines of 10,000; nothing was imported" in lines[2]
    assert "--partial" in lines[2] and len(lines) == 3
    cat = terminal.open()
    assert cat.item_count() == 0 and cat.movements() == []
    cat.close()
    status, out, err = terminal.run("import", path, "--data", terminal.dir, "--partial")
    assert status == 1
    assert "line 1234: bad price" in err and "line 8766: bad barcode" in err
    assert "10,000 lines read, 9,998 imported (9,998 new" in out
    assert "2 bad lines left out" in out
    cat = terminal.open()
    assert cat.item_count() == 9998
    assert cat.find_by_plu(1233) is None and cat.find_by_plu(8765) is None   # lines 1234, 8766
    assert cat.find_by_plu(1232)["price"] == 1280
    assert len(cat.categories()) == 12
    item = cat.find_by_barcode(_codes(1)[0])
    assert (item["plu"], item["name_zh"], item["tax_rate"]) == (1, "商品1", 13000)
    assert len(cat.movements()) == len([i for i in range(10000) if i % 50
                                        and i + 2 not in (1234, 8766)])
    cat.close()


def _import_text(terminal, tmp_path, text, *options, bom=False):
    path = str(tmp_path / "in.csv")
    with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return terminal.run("import", path, "--data", terminal.dir, *options)


def test_every_bad_line_says_its_number_and_why(terminal, tmp_path):
    water, cola, chips = contract.WATER, contract.COLA, contract.CHIPS
    status, out, err = _import_text(terminal, tmp_path, HEADER + "".join([
        "1,%s|%s,Water,矿泉水,Drinks,饮料,2.00,13,each,10,2,1\n" % (water, water),  # 2 ok
        "2,%s,Cola,,Drinks,,3.505,13,each,,,1\n" % cola,                         # 3
        "3,6901234567890,Bad code,,,,1.00,13,each,,,1\n",                        # 4
        "4,%s,Same code,,,,1.00,13,each,,,1\n" % water,                          # 5
        "5,,Pounds,,,,1.00,13,lb,,,1\n",                                         # 6
        "1,,Again,,,,1.00,13,each,,,1\n",                                        # 7
        "6,,,,,,1.00,13,each,,,1\n",                                             # 8
        "7,,Short line,1.00\n",                                                  # 9
        "8,,Heavy,,,,9.90,9,kg,1.2345,,1\n",                                     # 10
        "9,,Halves,,,,9.90,9,each,2.5,,1\n",                                     # 11
        "10,2100101003509,Label,,,,1.00,9,each,,,1\n",                           # 12
        "11,,Tax,,,,1.00,113,each,,,1\n",                                        # 13
        "12,,Maybe,,,,1.00,13,each,,,perhaps\n",                                 # 14
        "abc,,No PLU,,,,1.00,13,each,,,1\n",                                     # 15
        "13,,Drinks again,,Drinks,饮品,1.00,13,each,,,1\n",                       # 16
        "14,%s,Chips,,,,-1,13,each,,,1\n" % chips,                               # 17
    ]))
    assert status == 2
    said = dict(line.split(": ", 2)[1:] for line in err.splitlines() if ": line " in line)
    expect = {
        "line 3": "bad price '3.505': more than 2 decimals (CNY has 2 decimals)",
        "line 4": "bad barcode '6901234567890': wrong check digit (it ends in 0; the check digit is 2)",
        "line 5": "barcode %s is also on line 2" % water,
        "line 6": "unknown unit 'lb': each or kg",
        "line 7": "PLU 1 is also on line 2",
        "line 8": "name_en: is empty",
        "line 9": "4 fields, the header has 12",
        "line 10": "bad stock '1.2345': more than 3 decimals",
        "line 11": "bad stock '2.5': whole pieces for an item sold each",
        "line 12": ("barcode '2100101003509' is read as a scale label ([retail] scale_rules, "
                    "prefix 21): a weighed item is found by its PLU"),
        "line 13": "bad tax rate '113': from 0 to 100 (percent)",
        "line 14": "bad active 'perhaps': 1 or 0 (yes or no)",
        "line 15": "bad PLU 'abc': a number from 1 to 999999",
        "line 16": "category Drinks is 饮品 here and 饮料 on line 2",
        "line 17": "bad price '-1': from 0 to 999999.99",
    }
    assert said == expect
    assert "15 bad lines of 16; nothing was imported" in err
    cat = terminal.open()
    assert cat.item_count() == 0
    cat.close()


def test_bad_utf8_line_and_bom(terminal, tmp_path):
    path = str(tmp_path / "in.csv")
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + HEADER.encode() + "1,,Water,水,,,2.00,13,each,,,1\n".encode()
                + b"2,,Caf\xe9,,,,2.00,13,each,,,1\n")     # Latin-1, not UTF-8
    status, out, err = terminal.run("import", path, "--data", terminal.dir, "--partial")
    assert status == 1
    assert "line 3: not UTF-8 text: save the file as UTF-8" in err
    cat = terminal.open()
    assert cat.find_by_plu(1)["name_zh"] == "水" and cat.item_count() == 1
    cat.close()


def test_header_problems_refuse_the_file(terminal, tmp_path):
    status, out, err = _import_text(terminal, tmp_path,
                                    "plu,name,price_USD\n1,Water,1.00\n", "--partial")
    assert status == 2
    assert "line 1: unknown column 'name'" in err
    assert "line 1: the prices are in price_USD and this terminal sells in CNY" in err
    assert "nothing was imported" in err
    status, out, err = _import_text(terminal, tmp_path, "name_en,price\nWater,1.00\n")
    assert status == 2 and "line 1: no plu column" in err
    status, out, err = _import_text(terminal, tmp_path, "")
    assert status == 2 and "the file is empty" in err


def test_a_file_of_some_columns_updates_only_those(terminal, tmp_path):
    water, cola = contract.WATER, contract.COLA
    status, out, err = _import_text(terminal, tmp_path, HEADER +
                                    "1,%s,Water,矿泉水,Drinks,饮料,2.00,13,each,10,2,1\n" % water +
                                    "2,%s,Cola,可乐,Drinks,饮料,3.50,13,each,5,,1\n" % cola +
                                    "3,,Apples,苹果,Fruit,水果,12.80,9,kg,2.5,1,1\n", bom=True)
    assert status == 0, err
    status, out, err = _import_text(terminal, tmp_path, "plu,price_CNY\n1,2.20\n2,3.50\n")
    assert status == 0 and "1 changed, 1 unchanged" in out
    status, out, err = _import_text(terminal, tmp_path, "plu,stock\n1,8\n3,2.25\n")
    assert status == 0 and "2 stock counts" in out
    # a barcode moves from one item to another in one file, the taker's line first
    status, out, err = _import_text(terminal, tmp_path,
                                    "plu,barcodes\n2,%s|%s\n1,\n" % (cola, water))
    assert status == 0, err
    assert "2 changed" in out
    cat = terminal.open()
    water_item = cat.find_by_plu(1)
    assert (water_item["price"], water_item["name_zh"], water_item["low_stock"]) == (220, "矿泉水", 2)
    assert cat.stock(water_item["id"]) == 8
    apples = cat.find_by_plu(3)
    assert cat.stock(apples["id"]) == 2250 and apples["unit"] == "kg"
    assert cat.find_by_barcode(water)["plu"] == 2 and cat.barcodes_of(water_item["id"]) == []
    moves = cat.movements(apples["id"])
    assert [(m["delta"], m["reason"], m["operator"], m["ref"]) for m in moves] == [
        (2500, "counted", "import", "import in.csv"), (-250, "counted", "import", "import in.csv")]
    cat.close()
    # a new PLU needs a name and a price
    status, out, err = _import_text(terminal, tmp_path, "plu,stock\n4,1\n")
    assert status == 2 and "line 2: PLU 4 is a new item and needs name_en and price" in err


def test_partial_import_keeps_a_barcode_on_an_item_whose_line_is_bad(terminal, tmp_path):
    water = contract.WATER
    _import_text(terminal, tmp_path, HEADER + "1,%s,Water,,,,2.00,13,each,,,1\n" % water)
    status, out, err = _import_text(terminal, tmp_path, "plu,barcodes,name_en,price\n"
                                    "1,,Water,2.0x\n"                # bad: keeps its code
                                    "2,%s,Still water,2.50\n" % water, "--partial")
    assert status == 1
    assert "line 2: bad price '2.0x'" in err
    assert "line 3: barcode %s stays on PLU 1, whose line 2 is not imported" % water in err
    cat = terminal.open()
    assert cat.find_by_barcode(water)["plu"] == 1 and cat.find_by_plu(2) is None
    cat.close()


def test_negative_stock_in_a_file_follows_the_configuration(terminal, tmp_path):
    terminal.config(allow_negative_stock="false")
    status, out, err = _import_text(terminal, tmp_path, HEADER + "1,,Water,,,,2.00,13,each,-3,,1\n")
    assert status == 2
    assert "stock -3 is below zero, which [retail] allow_negative_stock = false does not allow" in err
    terminal.config(allow_negative_stock="true")
    status, out, err = _import_text(terminal, tmp_path, HEADER + "1,,Water,,,,2.00,13,each,-3,,1\n")
    assert status == 0, err
    cat = terminal.open()
    assert cat.stock(cat.find_by_plu(1)["id"]) == -3
    cat.close()


def test_export_import_round_trip_is_exact(terminal, tmp_path):
    status, out, err = terminal.run("import", cc.DEMO, "--data", terminal.dir)
    assert status == 0, err
    cat = terminal.open()
    water = cat.find_by_plu(1)["id"]
    apples = cat.find_by_plu(101)["id"]
    cat.record_movement(water, -50, "sale", "3", "000001")            # below zero
    cat.record_movement(apples, -452, "sale", "3", "000001")
    cat.add_item(7777, 'Quoted, "odd" name', 5, name_zh="逗号,引号\"", tax_rate=8875,
                 active=False, barcodes=["ABC-123 x"])
    n_moves = len(cat.movements())
    cat.close()
    first = str(tmp_path / "first.csv")
    assert terminal.run("export", first, "--data", terminal.dir)[0] == 0
    # the same file into the same catalogue: nothing changes, no movement
    status, out, err = terminal.run("import", first, "--data", terminal.dir)
    assert status == 0 and "0 new, 0 changed, 23 unchanged; 0 stock counts" in out
    cat = terminal.open()
    assert len(cat.movements()) == n_moves
    cat.close()
    # into a new data folder: the same catalogue, the same file again
    os.rename(os.path.join(terminal.dir, "catalogue.db"), str(tmp_path / "old.db"))
    for suffix in ("-wal", "-shm"):
        if os.path.exists(os.path.join(terminal.dir, "catalogue.db" + suffix)):
            os.unlink(os.path.join(terminal.dir, "catalogue.db" + suffix))
    assert terminal.run("import", first, "--data", terminal.dir)[0] == 0
    second = str(tmp_path / "second.csv")
    assert terminal.run("export", second, "--data", terminal.dir)[0] == 0
    with open(first, "rb") as a, open(second, "rb") as b:
        text = a.read()
        assert text == b.read()
    assert text.startswith(b"\xef\xbb\xbf")
    rows = text.decode("utf-8-sig").splitlines()
    assert rows[1] == "1,6901234567892,Mineral water 550ml,矿泉水 550毫升,Drinks,饮料,2.00,13,each,-2,12,1"
    assert rows[21] == "101,,Apples,苹果,Fruit,水果,12.80,9,kg,12.048,3.000,1"
    assert rows[23] == '7777,ABC-123 x,"Quoted, ""odd"" name","逗号,引号""",,,0.05,8.875,each,0,,0'
    cat = terminal.open()
    odd = cat.find_by_plu(7777)
    assert (odd["name_zh"], odd["tax_rate"], odd["active"]) == ('逗号,引号"', 8875, False)
    cat.close()


def test_movements_export(terminal, tmp_path):
    terminal.run("import", cc.DEMO, "--data", terminal.dir)
    cat = terminal.open()
    apples = cat.find_by_plu(101)["id"]
    cat.record_movement(apples, -452, "sale", "3", "000042")
    cat.record_movement(apples, 452, "refund", "3", "000043")
    cat.close()
    path = str(tmp_path / "moves.csv")
    status, out, err = terminal.run("movements", path, "--data", terminal.dir, "--after", "22",
                                    "--no-bom")
    assert status == 0 and "2 movements written" in out
    with open(path, "rb") as f:
        rows = f.read().decode("utf-8").splitlines()
    assert rows[0] == "id,utc,plu,name_en,reason,delta,on_hand,unit,operator,ref"
    assert rows[1].startswith("23,") and rows[1].endswith(",101,Apples,sale,-0.452,12.048,kg,3,000042")
    assert rows[2].endswith(",101,Apples,refund,0.452,12.500,kg,3,000043") and len(rows) == 3


def test_export_leaves_out_a_damaged_item_and_says_so(terminal, tmp_path):
    terminal.run("import", cc.DEMO, "--data", terminal.dir)
    _tamper(os.path.join(terminal.dir, "catalogue.db"), "UPDATE items SET price=1 WHERE plu=3")
    path = str(tmp_path / "out.csv")
    status, out, err = terminal.run("export", path, "--data", terminal.dir)
    assert status == 1
    assert "left out: PLU 3: its record failed its integrity check" in err
    assert "21 items written" in out and "1 damaged left out" in out
    # and an import does not touch it
    status, out, err = _import_text(terminal, tmp_path, "plu,price\n3,3.50\n")
    assert status == 2 and "line 2: PLU 3: its record in the catalogue failed its integrity" in err


def test_import_refused_while_the_terminal_runs(terminal, tmp_path):
    lock, _ = cli.lock_data_dir(terminal.dir, cli.RUN_LOCK)
    try:
        status, out, err = terminal.run("import", cc.DEMO, "--data", terminal.dir)
    finally:
        lock.close()
    assert status == 2
    assert "refused: the terminal is running on %s (pid %d)" % (terminal.dir, os.getpid()) in err
    assert "nothing was imported" in err
    assert not os.path.exists(os.path.join(terminal.dir, "catalogue.db"))


def test_a_simulators_folder_without_board_sim_is_named(terminal, tmp_path):
    assert terminal.run("import", cc.DEMO, "--data", terminal.dir)[0] == 0
    open(os.path.join(terminal.dir, "sim.lock"), "w").close()
    status, out, err = terminal.run("export", str(tmp_path / "x.csv"), "--data", terminal.dir,
                                    board=None)     # the device's default: pizero2w, a TPM
    assert status == 2 and "refused: the terminal's keys do not open" in err
    assert err.rstrip().endswith("(a simulator's data folder: add --board sim)")
    assert not os.path.exists(str(tmp_path / "x.csv"))


def test_progress_bar_only_on_a_terminal():
    tty = io.StringIO()
    bar = cc.Progress(tty, 1000, tty=True)
    bar.update(0, "checking")
    bar.update(1000, "writing")
    bar.end()
    text = tty.getvalue()
    assert "\rchecking  [" in text and "100%  1,000/1,000 lines" in text and text.endswith("\n")
    quiet = io.StringIO()
    bar = cc.Progress(quiet, 1000, tty=False)
    bar.update(500, "checking")
    bar.end()
    assert quiet.getvalue() == ""


def test_decimals_are_read_without_floats():
    assert cc.parse_decimal("12.80", 2) == 1280
    assert cc.parse_decimal("12.8", 2) == 1280
    assert cc.parse_decimal("0.1", 2) == 10
    assert cc.parse_decimal("-0.452", 3) == -452
    assert cc.parse_decimal("12.800", 2) == 1280
    assert cc.parse_decimal("1280", 0) == 1280
    for bad in ("", ".", "-", "1e3", "12.805", "1,5", "１２", "nan"):
        with pytest.raises(ValueError):
            cc.parse_decimal(bad, 2)
    assert cc.format_decimal(-452, 3) == "-0.452"
    assert cc.format_decimal(8875, 3, trim=True) == "8.875"
    assert cc.format_decimal(0, 3, trim=True) == "0"


@pytest.mark.parametrize("currency", ["CNY", "USD"])
def test_demo_catalogue_uses_the_simulators_codes(tmp_path, currency):
    from tools.sim import demo_codes
    config = {"money": {"currency": currency},
              "retail": {"allow_negative_stock": True, "scale_rules": None}}
    got = cc.load_demo(str(tmp_path), KEY, config)
    assert got["bad"] == [] and got["added"] == len(demo_codes.ITEMS) + 2
    cat = open_catalogue(str(tmp_path), KEY, config)
    for code in demo_codes.ITEMS:
        item = cat.find_by_barcode(code)
        assert item is not None and item["name_zh"] and item["unit"] == "each", code
        assert 50 <= item["price"] <= 5000
    for plu in demo_codes.WEIGHED_PLUS:
        item = cat.find_by_plu(plu)
        assert item["unit"] == "kg" and item["name_zh"] and cat.barcodes_of(item["id"]) == []
    assert cat.find_by_barcode(demo_codes.BAD_CHECK) is None
    assert [i["plu"] for i, n in cat.low_stock()] == [12]     # one item low from the start
    assert len(cat.categories()) == 7
    cat.close()


def test_a_data_folder_alone_is_a_simulators(terminal, tmp_path, monkeypatch, capsys):
    """`handpos catalogue import FILE --data DIR` with no configuration named takes the
    folder as `handpos sim --data DIR` does: the simulator's configuration and key root."""
    monkeypatch.delenv("HANDPOS_CONFIG", raising=False)
    capsys.readouterr()
    assert cli.main(["catalogue", "import", cc.DEMO, "--data", terminal.dir]) == 0
    out = tmp_path / "back.csv"
    # the simulator's configuration keeps the product's [mfa]: an export needs a code
    capsys.readouterr()
    assert cli.main(["catalogue", "export", str(out), "--data", terminal.dir]) == 2
    assert "give --operator ID" in capsys.readouterr().err and not out.exists()
    sim = tmp_path / "sim-no-mfa.toml"
    with open(cli.SIM_CONFIG) as f:
        sim.write_text(f.read() + "\n" + NO_MFA)
    assert cli.main(["catalogue", "export", str(out), "--data", terminal.dir,
                     "--config", str(sim), "--board", "sim"]) == 0
    text = out.read_text(encoding="utf-8-sig")
    assert "Mineral water" in text and len(text.splitlines()) > 20
