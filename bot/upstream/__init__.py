"""Reading balances from the providers: the shared HTTP transport (timeouts,
bounded reads, retries, redaction) and one module per provider, each turning its
answers into the engine's Snapshot.

May import the engine and common; never the state, notify or app layers.
"""
