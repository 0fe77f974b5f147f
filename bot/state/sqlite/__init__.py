"""The SQLite backend: one state file owned by one process (an exclusive flock)."""
