"""The merchant's offline policy: may this payment be approved without the host?

The card has its own say (a chip answers TC or AAC, Y1/Y3/Z1/Z3); this is the
merchant's, on top: the [offline] section of the configuration (docs/offline.md).
A refusal is a message key the sale screen shows in words; None allows it.
"""
from firmware.core.config import limits_for

# entry mode of a card record (firmware/cards/magstripe.py, flows/chip) -> policy's name
ENTRY = {"chip": "chip", "tap": "tap", "swipe": "swipe", "fallback": "fallback"}
HOUR_S = 3600


def refusal(config, kind, amount, currency, entry, cvm, queued, oldest_age_s, queue_ok=True,
            host_trusted=True):
    """None when an offline approval is within policy, else why not (a message key).

    queued: (count, amount) still to upload in this currency; oldest_age_s: the age
    of the oldest of them (None when nothing waits); cvm: "pin" only when the card
    itself checked the PIN (an online PIN cannot be checked without the host).
    host_trusted: False while the host certificate alarm is up (hosttrust.py): no
    offline approval of any kind until a technician clears it.
    """
    if not host_trusted:
        return "off_untrusted"
    off = config["offline"]
    if not off["enabled"]:
        return "off_disabled"
    if kind != "sale":
        return "off_not_sale"         # refunds and voids never offline
    if not queue_ok:
        return "off_no_queue"
    if ENTRY.get(entry) not in off["entry_modes"]:
        return "off_entry"
    if off["pin_required"] and cvm != "offline_pin":
        return "off_pin"
    per_payment, total, count = limits_for(config, currency)
    if amount > per_payment:
        return "off_over_limit"
    n, stored = queued
    if n + 1 > count or stored + amount > total:
        return "off_full"
    if oldest_age_s is not None and oldest_age_s >= off["max_age_h"] * HOUR_S:
        return "off_too_old"
    return None


def age_flag(config, age_s):
    """"" for a fresh record, "warn" from warn_age_h, "overdue" from max_age_h."""
    if age_s is None:
        return ""
    off = config["offline"]
    if age_s >= off["max_age_h"] * HOUR_S:
        return "overdue"
    if age_s >= off["warn_age_h"] * HOUR_S:
        return "warn"
    return ""
