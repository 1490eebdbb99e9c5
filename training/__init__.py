"""Scripts that train and describe the embedded default model (not part of the installed package)."""
