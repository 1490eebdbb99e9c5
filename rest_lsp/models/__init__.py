"""Where a model's weights come from: packaged parts, GGUF files, the Ollama store, folders.

``resolve`` turns ``model.name`` into a local Hugging Face model folder (converting and caching
what needs it) and says why that model was chosen.  Nothing here imports torch at import time.
"""
