#!/usr/bin/env bash
# Install rest-lsp into ./.venv, install what the real-editor tests need (Neovim, code-server,
# Chromium: scripts/editor-test-deps.sh), and run the whole test suite. CI runs this same command
# (.ci/run) with REST_LSP_REQUIRE_EDITORS=1: there the editor tests must run, never skip.
# REST_LSP_SKIP_EDITOR_DEPS=1 skips the editor install (the editor tests then skip, with how to
# install their tools).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "${REST_LSP_SKIP_EDITOR_DEPS:-0}" != 1 ]; then
    if ! bash scripts/editor-test-deps.sh; then
        if [ "${REST_LSP_REQUIRE_EDITORS:-0}" = 1 ]; then
            echo "error: the real-editor tests are required here and their tools did not install" >&2
            exit 1
        fi
        echo "warning: the editor tools did not install; the real-editor tests will skip" >&2
    fi
fi
exec .venv/bin/python -m pytest -q "$@"
