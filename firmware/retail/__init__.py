"""Selling items: barcodes and scale labels, the cart, tax, the itemised receipt.

A domain room: it imports firmware.core and firmware.ui only (tests/test_boundaries.py).
"""
