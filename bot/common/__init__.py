"""What every layer may use: structured log lines, secret redaction, retry
backoff and the plugin registries (entry points).

Standard library only; imports nothing else of the bot.
"""
