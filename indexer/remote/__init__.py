"""Indexes beyond this process: a served index's wire format and remote tier, and the Ray cluster
that builds and serves corpus shards (the ``cluster`` extra)."""
