"""Money is an integer count of minor units with an ISO 4217 currency. No floats."""

# alpha code -> (numeric code, minor unit exponent)
CURRENCIES = {
    "AUD": ("036", 2), "BHD": ("048", 3), "CAD": ("124", 2), "CHF": ("756", 2),
    "CNY": ("156", 2), "EUR": ("978", 2), "GBP": ("826", 2), "HKD": ("344", 2),
    "INR": ("356", 2), "JPY": ("392", 0), "KRW": ("410", 0), "KWD": ("414", 3),
    "MYR": ("458", 2), "NZD": ("554", 2), "SGD": ("702", 2), "THB": ("764", 2),
    "TWD": ("901", 2), "USD": ("840", 2),
}


def exponent(currency):
    return CURRENCIES[currency][1]


def numeric(currency):
    return CURRENCIES[currency][0]


def format_amount(minor, currency, with_code=False):
    """12345 USD -> '123.45'; 500 JPY -> '500'; negative amounts keep their sign."""
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    minor = -minor if minor < 0 else minor
    if exp == 0:
        text = "%d" % minor
    else:
        unit = 10 ** exp
        text = "%d.%0*d" % (minor // unit, exp, minor % unit)
    text = sign + text
    return (currency + " " + text) if with_code else text
