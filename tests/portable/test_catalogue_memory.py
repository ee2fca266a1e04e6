"""MemoryCatalogue keeps the catalogue contract (tests/portable/catalogue_contract.py),
on CPython and under MicroPython."""
from firmware.retail.catalogue import MemoryCatalogue
from tests.portable import catalogue_contract as contract


def _make(allow_negative_stock):
    return MemoryCatalogue(allow_negative_stock=allow_negative_stock, now=contract.fixed_now)


def test_find_by_barcode_plu_and_id():
    contract.check_find(_make)


def test_refused_items_and_barcodes_add_nothing():
    contract.check_refusals_add_nothing(_make)


def test_browse_categories_by_name_without_inactive_items():
    contract.check_browse(_make)


def test_movements_move_stock_and_are_recorded():
    contract.check_movements_and_stock(_make)


def test_negative_stock_refused_all_or_nothing():
    contract.check_negative_refused(_make)


def test_negative_stock_allowed():
    contract.check_negative_allowed(_make)


def test_low_stock_list():
    contract.check_low_stock(_make)


def test_price_change_recorded_with_operator():
    contract.check_set_price(_make)


def test_every_contract_check_is_run_here():
    names = [f.__name__ for f in contract.CHECKS]
    assert len(names) == 8, names
