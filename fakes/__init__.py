"""Loopback fakes of the upstream services, spoken to by the real client libraries."""
