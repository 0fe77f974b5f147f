"""Who hears what, and when: routing, the one suppression decision (snoozes, acks,
inhibition, quiet hours), messages that follow their alerts, the wording of alert
messages and the outbox delivery loop.

May import the engine, common, state and the notifier interface; never the app.
"""
