"""Stress harnesses of the daemon (a raw LSP client, the typing soak, kill -9 trials); no work at import."""
