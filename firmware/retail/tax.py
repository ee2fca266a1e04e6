"""Tax rates, percentages and the one rounding rule of the retail room.

Rates and percentages are integers in thousandths of a percent (the catalogue's unit):
13000 is 13 %, 8875 is 8.875 %, 100000 is 100 %. Money is integer minor units.

The rounding rule, the only one: a division that leaves a fraction of a minor unit is
rounded once, where it happens, half up (half away from zero for a negative amount),
and nothing is ever summed before it is rounded. So a line's weight price, its percent
discount and its tax are each rounded once on the line, and every total is a sum of
rounded line figures (docs/retail.md, "Cart, tax and rounding").
"""

PERCENT = 1000          # 1 % in the rate unit
WHOLE = 100000          # 100 %


def round_div(num, den):
    """num / den rounded half up on the magnitude (den > 0): 5/2 -> 3, -5/2 -> -3."""
    if den <= 0:
        raise ValueError("divisor must be positive")
    if num < 0:
        return -((-num * 2 + den) // (den * 2))
    return (num * 2 + den) // (den * 2)


def percent_of(amount, rate):
    """rate (thousandths of a percent) of amount, rounded half up."""
    return round_div(amount * rate, WHOLE)


def tax_of(amount, rate, inclusive):
    """The tax in a line amount at rate.

    inclusive: amount already holds the tax (shelf price with VAT): amount * r / (1 + r).
    exclusive: amount is before tax: amount * r. Rounded half up, once.
    """
    if inclusive:
        return round_div(amount * rate, WHOLE + rate)
    return round_div(amount * rate, WHOLE)


def parse_rate(text):
    """'13' or '13%' or '8.875' -> 13000 or 8875; ValueError for anything else
    (more than three decimals, a sign, more than 100 %)."""
    text = text.strip()
    if text.endswith("%"):
        text = text[:-1].strip()
    parts = text.split(".")
    if len(parts) > 2:
        raise ValueError("not a rate: %r" % text)
    whole = parts[0]
    frac = parts[1] if len(parts) == 2 else ""
    if not whole and not frac:
        raise ValueError("no rate")
    for part in (whole, frac):
        for ch in part:
            if not "0" <= ch <= "9":
                raise ValueError("not a rate: %r" % text)
    if len(frac) > 3:
        raise ValueError("at most three decimals: %r" % text)
    value = int(whole or "0") * PERCENT + int((frac + "000")[:3])
    if value > WHOLE:
        raise ValueError("more than 100 %%: %r" % text)
    return value


def format_rate(rate):
    """13000 -> '13%', 8875 -> '8.875%', 12500 -> '12.5%'."""
    text = "%d" % (rate // PERCENT)
    frac = rate % PERCENT
    if frac:
        digits = "%03d" % frac
        while digits.endswith("0"):
            digits = digits[:-1]
        text += "." + digits
    return text + "%"


def spread(amount, weights):
    """amount in minor units over weights (the lines' bases), by the largest-remainder
    method: each gets amount * weight // sum rounded down, and the units left over go
    one each to the largest remainders (the earlier on a tie). The shares add up to
    amount exactly and none is more than its weight when amount <= sum of weights. A
    cart discount, a points redemption and a promotion's group reward are spread so."""
    total = 0
    for w in weights:
        total += w
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    shares = []
    rests = []
    given = 0
    for i in range(len(weights)):
        share = amount * weights[i] // total
        shares.append(share)
        rests.append((-(amount * weights[i] % total), i))
        given += share
    rests.sort()
    for k in range(amount - given):
        shares[rests[k][1]] += 1
    return shares
