/**
 * VS Code settings <-> the server's nested configuration.  Pure: no `vscode` import, so that it
 * is unit-tested with node's test runner.
 *
 * A setting `rest-lsp.<section>.<camelName>` is the server option `<section>.<snake_name>`
 * (`rest-lsp.decoding.maxNewTokens` -> `{"decoding": {"max_new_tokens": ...}}`).  The defaults of
 * the settings are the server's own (tests/editors/test_defaults.py keeps them equal), and only
 * the settings the user has set are sent, so that a server config file still applies to the rest.
 */

/** The sections of the server's configuration (rest_lsp.config.schema.Config). */
export const SECTIONS = ['model', 'index', 'retrieval', 'decoding', 'server'] as const;
export type Section = (typeof SECTIONS)[number];

/** The prefix of every setting of this extension. */
export const PREFIX = 'rest-lsp';

/** Settings that configure the client, not the server. */
export const CLIENT_ONLY = new Set(['serverPath']);

export type ServerOptions = Partial<Record<Section, Record<string, unknown>>>;

/** `maxNewTokens` -> `max_new_tokens`. */
export function camelToSnake(name: string): string {
    return name.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

/** The server option `[section, field]` of a setting key relative to the prefix, or undefined. */
export function serverOptionOf(key: string): [Section, string] | undefined {
    const dot = key.indexOf('.');
    if (dot < 0) {
        return undefined;
    }
    const section = key.slice(0, dot);
    const field = key.slice(dot + 1);
    if (!(SECTIONS as readonly string[]).includes(section) || field.includes('.') || CLIENT_ONLY.has(key)) {
        return undefined;
    }
    return [section as Section, camelToSnake(field)];
}

/** The setting keys (relative to the prefix) contributed in package.json that map to server options. */
export function serverSettingKeys(contributedProperties: Record<string, unknown>): string[] {
    return Object.keys(contributedProperties)
        .filter((k) => k.startsWith(PREFIX + '.'))
        .map((k) => k.slice(PREFIX.length + 1))
        .filter((k) => serverOptionOf(k) !== undefined);
}

/** Nested server options from `{settingKey: value}` (keys relative to the prefix). */
export function toServerOptions(values: Record<string, unknown>): ServerOptions {
    const out: ServerOptions = {};
    for (const [key, value] of Object.entries(values)) {
        const option = serverOptionOf(key);
        if (option === undefined || value === undefined) {
            continue;
        }
        const [section, field] = option;
        (out[section] ??= {})[field] = value;
    }
    return out;
}

/**
 * The options to send on a configuration change: the values set now, plus the defaults of the
 * settings that were sent before but are no longer set (the server merges what it receives over
 * what it had, so a removed setting has to be sent back to its default explicitly).
 */
export function changedOptions(
    explicit: Record<string, unknown>,
    previouslySent: ReadonlySet<string>,
    defaults: Record<string, unknown>,
): Record<string, unknown> {
    const out: Record<string, unknown> = { ...explicit };
    for (const key of previouslySent) {
        if (!(key in explicit) && key in defaults) {
            out[key] = defaults[key];
        }
    }
    return out;
}

/** `~` and `${userHome}` expanded; `${workspaceFolder}` replaced by the first folder. */
export function expandPath(path: string, home: string, workspaceFolder: string | undefined): string {
    let out = path.trim();
    if (out === '~' || out.startsWith('~/')) {
        out = home + out.slice(1);
    }
    out = out.replace(/\$\{userHome\}/g, home);
    if (workspaceFolder !== undefined) {
        out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
    }
    return out;
}
