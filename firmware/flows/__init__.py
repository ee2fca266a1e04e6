"""The terminal's flows, one module each; each is a state table (firmware.core.fsm)."""
