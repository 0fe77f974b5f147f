"""What the bot keeps across restarts: the async StateStore protocol (grouped by
concern: alerts, outbox, history, marks), its plain data types and their codec,
and the backends: sqlite/ by default, postgres/ (`state_url`) for replicas, with
the lock that makes one of them active (backends.py picks one; transfer.py
copies a state from SQLite to PostgreSQL).

May import the engine and common; no SQL lives outside a backend's package.
"""
