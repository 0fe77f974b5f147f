"""Loopback fakes of the upstream services, spoken to by the real client libraries,
and a throwaway real PostgreSQL (postgres.py) for the state tests and the benchmark."""
