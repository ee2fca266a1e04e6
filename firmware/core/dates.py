"""Civil dates as day numbers, in whole numbers only (H. Hinnant's algorithms), so they
come out the same under CPython and MicroPython, whose time modules and epochs differ by
port. Day 0 is 1970-01-01, proleptic Gregorian. Used by the journal's stamps (reports,
alerts, QR requests) and the promotions' windows."""


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of the date y-m-d."""
    y -= 1 if m <= 2 else 0
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    """(year, month, day) of a count of days since 1970-01-01."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def weekday(day):
    """ISO weekday (1 Monday .. 7 Sunday) of a day number (1970-01-01 was a Thursday)."""
    return (day + 3) % 7 + 1
