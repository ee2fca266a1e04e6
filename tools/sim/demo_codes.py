"""The simulator's demo barcodes, in one place: the demo catalogue gives its items these
codes, the simulator's scan key (s) steps through SCAN_ORDER, and the tests scan them.

All are made up. ITEMS are EAN-13 codes in the GS1 China prefix range (690-699), with
item numbers no real product has and correct check digits (tests/test_scanner.py
checks every one). The scale labels follow the common in-store layout for prefixes
20-29, 2F PPPPP VVVVV C: a flag digit, a 5-digit PLU, a 5-digit value and the EAN-13
check digit, read by the default [retail] scale_rules (firmware/core/config.py):
prefixes 20-24 a price in minor units (2 decimals), 25-29 a weight in grams.
"""

# Twenty items sold each, one code apiece (6901234567892 is the one issue 12 names).
ITEMS = (
    "6901234567892",
    "6901234560015",
    "6901234560022",
    "6901234560039",
    "6901234560046",
    "6912345000116",
    "6912345000284",
    "6912345000352",
    "6923456001015",
    "6923456001183",
    "6934567000125",
    "6934567000293",
    "6945678000157",
    "6956789000127",
    "6956789000295",
    "6967890000166",
    "6978901000112",
    "6989012000144",
    "6990123000176",
    "6990123000244",
)

# The two items sold by weight: their PLUs, which the labels below carry.
WEIGHED_PLUS = ("00101", "00102")

# Labels a shop's scale prints (prefix, PLU, value as the rule reads it).
SCALE_PRICE = "2100101003509"     # prefix 21, PLU 00101, price 003.50
SCALE_WEIGHT = "2600102007501"    # prefix 26, PLU 00102, 750 g
SCALE_LABELS = (
    {"code": SCALE_PRICE, "prefix": "21", "plu": "00101", "price": 350, "decimals": 2},
    {"code": SCALE_WEIGHT, "prefix": "26", "plu": "00102", "grams": 750},
)

# ITEMS[0] with its last digit off by one: the check digit fails ("Bad barcode").
BAD_CHECK = "6901234567893"

# What the simulator's scan key scans, one after the other, round and round: a price
# label third and a weight label soon after, so a few presses show both kinds, then a
# bad check digit, then the rest of the items.
SCAN_ORDER = ITEMS[:2] + (SCALE_PRICE,) + ITEMS[2:4] + (SCALE_WEIGHT, BAD_CHECK) + ITEMS[4:]
