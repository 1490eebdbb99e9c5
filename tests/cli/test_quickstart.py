"""The terminal demo of ``rest-lsp serve``: the completion printed as code, indentation intact."""

from rest_lsp.commands.quickstart import demo_listing


def test_the_listing_shows_typed_and_completed_lines_with_their_own_indentation():
    listing = demo_listing("def fibonacci(n):\n    ", "if n < 2:\n        return n\n    return 1")
    assert listing.splitlines() == [
        "  | def fibonacci(n):",
        "  +     if n < 2:",
        "  +         return n",
        "  +     return 1",
    ]


def test_no_completion_says_so():
    assert demo_listing("x = ", None) == "    (no completion)"
