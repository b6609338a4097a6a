"""The kernel: standard library only (ids, money, clock, events, errors, protocols)."""
