/** Unit tests of the settings mapping (node's test runner: npm test). */

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { camelToSnake, changedOptions, expandPath, serverOptionOf, serverSettingKeys, toServerOptions } from '../settings';

const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
const properties: Record<string, { default?: unknown }> = manifest.contributes.configuration.properties;

test('camelCase settings map to snake_case server options', () => {
    assert.equal(camelToSnake('maxNewTokens'), 'max_new_tokens');
    assert.deepEqual(serverOptionOf('decoding.maxNewTokens'), ['decoding', 'max_new_tokens']);
    assert.equal(serverOptionOf('serverPath'), undefined);
    assert.equal(serverOptionOf('nosuch.section'), undefined);
});

test('every contributed setting but serverPath is a server option', () => {
    const keys = serverSettingKeys(properties);
    assert.equal(keys.length, Object.keys(properties).length - 1);
    assert.ok(keys.includes('index.corpusRoots'));
});

test('options are nested by section', () => {
    assert.deepEqual(toServerOptions({ 'model.name': '/m', 'decoding.maxNewTokens': 8, 'server.debounceMs': 0, serverPath: 'x' }), {
        model: { name: '/m' },
        decoding: { max_new_tokens: 8 },
        server: { debounce_ms: 0 },
    });
});

test('a setting removed since the last send goes back to its default', () => {
    const out = changedOptions({ 'decoding.maxNewTokens': 8 }, new Set(['decoding.maxNewTokens', 'server.debounceMs']), {
        'decoding.maxNewTokens': 64,
        'server.debounceMs': 75,
    });
    assert.deepEqual(out, { 'decoding.maxNewTokens': 8, 'server.debounceMs': 75 });
});

test('paths expand ~ and ${workspaceFolder}', () => {
    assert.equal(expandPath('~/x/rest-lsp', '/home/u', undefined), '/home/u/x/rest-lsp');
    assert.equal(expandPath('${workspaceFolder}/.venv/bin/rest-lsp', '/home/u', '/ws'), '/ws/.venv/bin/rest-lsp');
    assert.equal(expandPath('rest-lsp', '/home/u', '/ws'), 'rest-lsp');
});
