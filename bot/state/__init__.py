"""What the bot keeps across restarts: the StateStore protocol (grouped by
concern: alerts, outbox, history, marks), its plain data types and their codec,
and the backends (sqlite/ by default).

May import the engine and common; no SQL lives outside a backend's package.
"""
