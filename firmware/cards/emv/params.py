"""The terminal's EMV parameters: which applications it accepts and how it decides.

These are the defaults of an attended, online-capable handheld (terminal type 22) with
a PIN pad for online and offline plaintext PIN and signature; an acquirer's parameter
download would replace them. The CA public keys are not here: the board loads them
(the test CA only when [security] test_keys is true).
"""
from firmware.core.config import limits_for
from firmware.core.money import numeric

VISA = "A0000000031010"
MASTERCARD = "A0000000041010"
UNIONPAY = "A000000333010101"


def defaults(config, ca_keys):
    cur = numeric(config["money"]["currency"])
    term = config["terminal"]
    # The floor limits are the merchant's offline limit: below it the default action
    # codes let the card approve when the host cannot be reached (Y3), or at once (Y1)
    # while the host is known to be down; 0 where offline is off for that interface.
    off = config["offline"]
    per_payment = limits_for(config, config["money"]["currency"])[0] if off["enabled"] else 0
    floor = per_payment if "chip" in off["entry_modes"] else 0
    cl_floor = per_payment if "tap" in off["entry_modes"] else 0
    return {
        "aids": [
            {"aid": VISA, "label": "VISA", "version": "0096", "partial": True,
             "tac_denial": "0010000000", "tac_online": "DC4004F800", "tac_default": "DC4000A800"},
            {"aid": MASTERCARD, "label": "MASTERCARD", "version": "0002", "partial": True,
             "tac_denial": "0000000000", "tac_online": "F850ACF800", "tac_default": "FC50ACA000"},
            {"aid": UNIONPAY, "label": "UNIONPAY", "version": "0030", "partial": True,
             "tac_denial": "0010000000", "tac_online": "D84004F800", "tac_default": "D84000A800"},
        ],
        # 9F33: manual key entry, magstripe, IC; plaintext PIN, enciphered online PIN,
        # signature, no CVM; SDA, DDA
        "terminal_capabilities": "E0E8C0",
        "additional_capabilities": "6000F0A001",
        "terminal_type": "22",
        "country": "0" + cur,
        "currency": "0" + cur,
        "floor_limit": floor,
        "terminal_id": term["id"],
        "merchant_id": term["merchant_id"],
        "merchant_name": term["merchant_name"][:20],
        "ca_keys": ca_keys,
        "contactless": {"transaction_limit": 100000, "floor_limit": cl_floor, "cvm_limit": 5000},
    }
