"""EMV chip and contactless card processing (EMV 4.3 Books 1-4).

tlv     BER-TLV as EMV uses it (Book 3 Annex B) and data object lists (Book 3 5.4)
kernel  the terminal kernel: a state machine the sale flow drives one event at a time
"""
