"""balance-bot: warns a team before its CometAPI credit runs out."""
