// Drives a running code-server (VS Code in the browser) with headless Chromium through
// playwright-core: open a Python file, type, wait for rest-lsp's ghost text, accept it with Tab,
// save.  Reads a JSON spec from REST_LSP_E2E:
//   { url, chromium, file (name for Quick Open), path (its path: saving waits for it to change),
//     type (text to type at the end of the file),
//     expected (the ghost text to wait for), expected_invoked (after Esc and Alt+\),
//     expected_next (after Alt+], the request's next item; Tab accepts the last one shown),
//     screenshot, out, timeout_ms, classic (use the suggestion list instead of the ghost text),
//     bad_server_path: optional, set in the Settings editor at the end (a missing server),
//     keys: optional, instead of the steps after the first ghost text: the extension's own keys,
//       { accept_line (a key to press), accepted (the line it must leave in the editor),
//         toggle (a key to press twice), bindings (keybindings to look up in the Keyboard
//         Shortcuts editor, e.g. "shift+alt+l") } }
// and writes a JSON report to `out`: { ghost, ghost_invoked, ghost_next, statusbar, saved, status_output,
//     not_found_message, suggestions, toggled_off, toggled_on, keybindings, error, events }.
// Every wait is on a condition with a timeout (no fixed sleeps).
'use strict';

const fs = require('fs');
const { chromium } = require('playwright-core');

const spec = JSON.parse(process.env.REST_LSP_E2E || '{}');
const timeout = spec.timeout_ms || 120000;
const report = { events: [] };
const t0 = Date.now();
const note = (what) => report.events.push(`${Date.now() - t0} ms ${what}`);

/**
 * The ghost text VS Code shows in the active editor: the first line is made of
 * `.ghost-text-decoration` spans inside the cursor's line, the further lines are view lines (in a
 * view zone below it) made of `.ghost-text` spans; null when there is none.
 */
function documentText() {
    // the visible lines without the ghost-text decorations: what the document holds
    const editor = document.querySelector('.editor-instance .monaco-editor.focused') ||
        document.querySelector('.editor-instance .monaco-editor');
    if (!editor) return '';
    return Array.from(editor.querySelectorAll('.view-line'))
        .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
        .map((line) => {
            const copy = line.cloneNode(true);
            copy.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text').forEach((g) => g.remove());
            return copy.textContent.replace(/\u00a0/g, ' ');
        }).join('\n');
}

function ghostText() {
    const editor = document.querySelector('.editor-instance .monaco-editor.focused') ||
        document.querySelector('.editor-instance .monaco-editor');
    if (!editor) return null;
    const inline = Array.from(editor.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview'));
    const lines = Array.from(new Set(Array.from(editor.querySelectorAll('.ghost-text'), (span) => span.closest('.view-line'))))
        .filter((line) => line !== null)
        .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top);
    if (inline.length === 0 && lines.length === 0) return null;
    const text = inline.map((span) => span.textContent).join('') +
        lines.map((line) => '\n' + line.textContent).join('');
    return text.replace(/\u00a0/g, ' ');
}

async function statusBarLabel(page) {
    const item = page.locator('.statusbar-item', { hasText: 'rest-lsp' }).first();
    if ((await item.count()) === 0) return null;
    const label = await item.getAttribute('aria-label');
    return { label, text: (await item.innerText()).trim() };
}

/** Save the active editor (Ctrl+S) and wait until the file on disk has changed. */
async function save(page) {
    const before = spec.path ? fs.readFileSync(spec.path, 'utf8') : null;
    await page.keyboard.press('Control+S');
    if (before === null) {
        await page.locator('.tab.active.dirty').waitFor({ state: 'detached' });
        return;
    }
    await waitFor('saved', async () => ({ ok: fs.readFileSync(spec.path, 'utf8') !== before }), 30000);
}

/** Run a command by its title through the Command Palette (F1): the row with exactly that label. */
async function runCommand(page, title) {
    await page.keyboard.press('F1');
    await page.locator('.quick-input-widget input').fill('>' + title);
    const exact = new RegExp('^' + title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '$');
    await page.locator('.quick-input-list .monaco-list-row')
        .filter({ has: page.locator('.label-name', { hasText: exact }) }).first().click();
}

/** The text of the notification toasts shown now. */
async function toasts(page) {
    return (await page.locator('.notifications-toasts').innerText().catch(() => '')).replace(/\u00a0/g, ' ');
}

/** Click the status-bar item (Show Status) and wait for its summary message containing `text`. */
async function statusSummary(page, text) {
    const item = page.locator('.statusbar-item', { hasText: 'rest-lsp' }).first();
    await item.click();
    let clicked = Date.now();
    return waitFor(`status summary with ${text}`, async () => {
        const shown = await toasts(page);
        if (!shown.includes(text) && Date.now() - clicked > 3000) {
            // a click while the item was being redrawn (its label had just changed) opens
            // nothing: ask again rather than wait out the whole timeout
            await item.click();
            clicked = Date.now();
        }
        return { ok: shown.includes(text), value: shown };
    }, 30000);
}

/**
 * The rows of the Keyboard Shortcuts editor for one keybinding (searched as "key", an exact
 * match): [{ command, key, when, source }], `command` as the editor labels it ("Title (id)" or
 * the id), `source` "System" for VS Code's defaults or the extension's name.
 */
async function keybindingRows(page, key) {
    await page.locator('.keybindings-editor .keybindings-header input').first().fill(`"${key}"`, { timeout: 30000 });
    // filtered once every row shown is that key (the unfiltered table lists every command)
    return waitFor(`keybindings of ${key}`, async () => {
        const rows = await page.locator('.keybindings-editor .keybindings-table-container .monaco-list-row').evaluateAll((trs) =>
            trs.map((tr) => ({
                command: tr.querySelector('.command')?.getAttribute('aria-label') ?? null,
                key: tr.querySelector('.monaco-keybinding')?.getAttribute('aria-label') ?? null,
                when: tr.querySelector('.when-label')?.textContent ?? null,
                // "System" or an extension's name: the label shown (rows are reused, and the
                // other label is hidden with its old text, not removed)
                source: Array.from(tr.querySelectorAll('.source .source-label .monaco-highlighted-label, .source .extension-label'))
                    .filter((e) => e.checkVisibility() && e.textContent).map((e) => e.textContent).join(' ') || null,
            })));
        return { ok: rows.length > 0 && rows.every((r) => (r.key || '').toLowerCase() === key), value: rows };
    }, 30000);
}

async function waitFor(what, fn, ms = timeout, every = 100) {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        last = await fn();
        if (last && last.ok) {
            note(what);
            return last.value;
        }
        if (Date.now() > deadline) {
            throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last && last.value)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, every));
    }
}

/** The extension's keybindings, pressed in the editor that shows the ghost text. */
async function extensionKeys(page, keys) {
    // accept-line: the ghost text's first line (and its line break) goes into the document
    await page.keyboard.press(keys.accept_line);
    report.accepted_line = await waitFor('first line accepted', async () => {
        const text = await page.evaluate(documentText);
        return { ok: text.includes(keys.accepted), value: text.slice(-200) };
    }, 10000);
    await save(page);
    report.saved = true;
    // toggle: completions off (the message, the status bar, the server's status), then on again
    await page.keyboard.press(keys.toggle);
    report.toggled_off = await waitFor('completions off', async () => {
        const s = await statusBarLabel(page);
        return { ok: (await toasts(page)).includes('completions off') && !!s && /completions are off/.test(s.label || ''), value: s };
    }, 30000);
    // the server's own status says so (Show Status: "state ready (completions off); ...")
    report.status_off = await statusSummary(page, 'state ready (completions off);');
    await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
    await page.keyboard.press(keys.toggle);
    report.toggled_on = await waitFor('completions on', async () => {
        const s = await statusBarLabel(page);
        return { ok: (await toasts(page)).includes('completions on') && !!s && /ready/.test(s.label || ''), value: s };
    }, 30000);
    report.status_on = await statusSummary(page, 'state ready;');
    // the Keyboard Shortcuts editor: who binds each key
    await runCommand(page, 'Preferences: Open Keyboard Shortcuts');
    await page.locator('.keybindings-editor').waitFor({ timeout: 30000 });
    report.keybindings = {};
    for (const key of keys.bindings || []) {
        report.keybindings[key] = await keybindingRows(page, key);
    }
}

async function main() {
    const browser = await chromium.launch({
        executablePath: spec.chromium || '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    try {
        page.setDefaultTimeout(timeout);
        await page.goto(spec.url);
        await page.locator('.monaco-workbench').waitFor();
        note('workbench');
        // the extension is up once its status-bar item reads "ready"
        report.statusbar_ready = await waitFor('rest-lsp ready', async () => {
            const s = await statusBarLabel(page);
            return { ok: !!s && /ready/.test(s.label || ''), value: s };
        });
        // open the file with Quick Open
        await page.keyboard.press('Control+P');
        await page.locator('.quick-input-widget input').fill(spec.file);
        await page.locator('.quick-input-list .monaco-list-row').first().waitFor();
        await page.keyboard.press('Enter');
        await page.locator(`.tab.active[aria-label*="${spec.file}"]`).waitFor();
        const editor = page.locator('.editor-instance .monaco-editor').first();
        await editor.locator('.view-lines').click();
        note('file open');
        await page.keyboard.press('Control+End');
        await page.keyboard.type(spec.type, { delay: 30 });
        note('typed');
        if (spec.classic) {
            // the classic completion item: the suggestion list (Ctrl+Space), Enter inserts it
            await page.keyboard.press('Control+Space');
            const rows = page.locator('.suggest-widget .monaco-list-row');
            await rows.first().waitFor();
            report.suggestions = (await rows.allInnerTexts()).map((t) => t.replace(/\u00a0/g, ' '));
            note('suggestions');
            await page.keyboard.press('Enter');
            await rows.first().waitFor({ state: 'hidden' });
            await save(page);
            report.saved = true;
            return;
        }
        // the ghost text shown by VS Code equals the server's completion
        try {
            report.ghost = await waitFor('ghost text', async () => {
                const ghost = await page.evaluate(ghostText);
                return { ok: ghost === spec.expected, value: ghost };
            });
        } catch (err) {
            report.ghost = await page.evaluate(ghostText);
            throw err;
        }
        report.statusbar = await waitFor('status bar figures', async () => {
            const s = await statusBarLabel(page);
            return { ok: !!s && /ms/.test(s.text), value: s };
        }, 30000);
        if (spec.screenshot) {
            await page.screenshot({ path: spec.screenshot });
            note('screenshot');
        }
        if (spec.keys) {
            await extensionKeys(page, spec.keys);
            return;
        }
        // Esc dismisses the ghost text; asking explicitly (Alt+\, an Invoked request: the
        // server returns up to max_items items to cycle through) shows it again
        await page.keyboard.press('Escape');
        await waitFor('ghost text dismissed', async () => ({ ok: (await page.evaluate(ghostText)) === null }), 10000);
        if (spec.expected_invoked !== undefined) {
            // the command behind Alt+\ (through the palette: key chords vary with the layout)
            await runCommand(page, 'Trigger Inline Suggestion');
            report.ghost_invoked = await waitFor('ghost text on request', async () => {
                const ghost = await page.evaluate(ghostText);
                return { ok: ghost === spec.expected_invoked, value: ghost };
            }, 60000);
        }
        if (spec.expected_next !== undefined) {
            // Alt+] (Show Next Inline Suggestion) cycles to the request's next item
            await page.keyboard.press('Alt+BracketRight');
            report.ghost_next = await waitFor('next ghost text', async () => {
                const ghost = await page.evaluate(ghostText);
                return { ok: ghost === spec.expected_next, value: ghost };
            }, 30000);
        }
        await page.keyboard.press('Tab');
        // accepted: the text is in the document now (a fast server may already show the next
        // completion as new ghost text, so "no ghost text" is not the sign)
        const accepted = [spec.expected_next, spec.expected_invoked, spec.expected].find((t) => t !== undefined);
        await waitFor('completion accepted', async () => {
            const text = await page.evaluate(documentText);
            return { ok: text.includes(accepted.trim()), value: text.slice(-200) };
        }, 10000);
        await save(page);
        // the status command opens the details (the output panel)
        await page.locator('.statusbar-item', { hasText: 'rest-lsp' }).first().click();
        report.status_output = await waitFor('status details', async () => {
            const text = await page.locator('.output-view, .panel .monaco-editor').first().innerText().catch(() => '');
            return { ok: text.includes('accepted_items'), value: text.replace(/\u00a0/g, ' ').slice(-2000) };
        }, 30000);
        report.saved = true;
        if (spec.bad_server_path) {
            // set a server path that does not exist in the Settings editor: the extension
            // restarts the server, and says that it was not found and how to fix it
            await runCommand(page, 'Preferences: Open User Settings');
            await page.locator('.settings-editor .suggest-input-container').waitFor();
            await page.keyboard.type('rest-lsp.serverPath');
            // a machine-overridable setting: in a remote window (code-server is one) it is set
            // in the Remote tab; in a desktop VS Code, in the User tab
            const remoteTab = page.locator('.settings-editor .settings-tabs-widget .action-label', { hasText: 'Remote' });
            if (await remoteTab.count()) await remoteTab.first().click();
            // once the search has filtered the list down to the setting
            const input = page.locator('.settings-editor .setting-item-contents', { hasText: 'Server Path' })
                .locator('input').first();
            await input.waitFor().catch(async (err) => { if (spec.debug) await page.screenshot({ path: spec.out + '.settings.png' }); throw err; });
            await input.fill(spec.bad_server_path);
            await page.keyboard.press('Tab');
            note('setting changed');
            if (spec.debug) await page.screenshot({ path: spec.out + '.settings.png' });
            report.not_found_message = await waitFor('server-not-found message', async () => {
                const text = await page.locator('.notifications-toasts').innerText().catch(() => '');
                return { ok: text.includes('was not found'), value: text };
            }, 60000);
        }
    } catch (err) {
        // what the editor looked like when it failed, next to the report
        await page.screenshot({ path: spec.out.replace(/\.json$/, '') + '-failure.png' }).catch(() => {});
        throw err;
    } finally {
        await browser.close();
    }
}

main()
    .catch((err) => {
        report.error = String(err && err.stack || err);
    })
    .finally(() => {
        fs.writeFileSync(spec.out, JSON.stringify(report, null, 2));
    });
