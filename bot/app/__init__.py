"""The running bot: App (lifetimes), the poll cycle (poll -> evaluate -> plan ->
commit -> deliver), scheduled jobs, the read model and views for chat commands,
/healthz and `check`, chat actions, and the CLI's other commands (demo, init,
test-notify).

May import every layer below; only the CLI imports it.
"""
