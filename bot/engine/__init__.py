"""The engine: plain values (accounts, snapshots, rules, alert states, events), the
rule kinds, the rule engine and the forecast and window math.

Pure and at the ground of the import graph: it imports only the standard library
and itself, no clock and no I/O, so every transition is testable with values.
"""
