"""The PostgreSQL backend (`state_url`): one database shared by replicas, of
which one is active (bot/state/postgres/leader.py). Imported only when
configured: psycopg is an optional dependency (the `postgres` extra)."""
