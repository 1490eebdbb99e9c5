"""Index storage: shards (token arrays, suffix arrays, manifests), the index directory and its
``CURRENT`` pointer, crash-safe writes, bit packing, the cache's entries and the index kinds."""
