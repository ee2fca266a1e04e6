"""The keypad's keys, by the names the flows use.

The board profile maps evdev key codes to these names; nothing in firmware/ knows a
key code. Two-character strings like "00" are single physical keys.
"""
DIGITS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
DOUBLE_ZERO = "00"
DOT = "."
CLEAR = "CLEAR"        # clears the field
BKSP = "BKSP"          # removes the last character
CANCEL = "CANCEL"      # back out of the step; from a menu, back to idle
ENTER = "ENTER"
F1 = "F1"
F2 = "F2"
F3 = "F3"
F4 = "F4"
UP = "UP"
DOWN = "DOWN"
MENU = "MENU"

ALL = DIGITS + (DOUBLE_ZERO, DOT, CLEAR, BKSP, CANCEL, ENTER, F1, F2, F3, F4, UP, DOWN, MENU)


def is_digit(key):
    return key in DIGITS or key == DOUBLE_ZERO
