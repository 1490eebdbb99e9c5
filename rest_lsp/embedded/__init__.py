"""The embedded 10 M-parameter model shipped in this folder (weights, config, tokenizer, model
card) and its loader (``model``): the fallback when no real model is installed, and the fast
model of the unit tests.
"""
