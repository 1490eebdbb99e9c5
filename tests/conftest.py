"""Shared pytest fixtures.  Each area keeps its fixtures in its own module, imported here."""

# --- indexer fixtures (issue 2: the datastore) -------------------------------------------
from indexer_fixtures import (  # noqa: F401
    index_env,
    tiny_tokenizer,
    tiny_tokenizer_path,
)
# --- end of indexer fixtures -----------------------------------------------------------------

# --- editor fixtures (issue 6: real-editor tests) ----------------------------------------------
from editors_testing import editor_corpus, editor_expected, editor_model_dir  # noqa: F401,E402
# --- end of editor fixtures ------------------------------------------------------------------
