"""Index search: suffix-array matches, retrieval over tiers, fan-out over replicas, occurrences,
the compact tier's lookups and the dense tier's nearest neighbours."""
