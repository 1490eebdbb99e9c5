"""Index building: source files walked and filtered, tokenized and cut into shards; the
partitioned corpus build; the compact (CREST) tier built from a corpus index."""
