"""The datastore: a live suffix-array index of token ids over a workspace and a code corpus.

Nothing in this package imports torch.
"""
