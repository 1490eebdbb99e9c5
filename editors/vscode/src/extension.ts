/**
 * The rest-lsp extension: starts `rest-lsp serve --stdio` with vscode-languageclient, which
 * provides the ghost-text inline completions (and, when the server offers it, the classic
 * completion item), forwards the items' acceptance command to the server and shows the
 * server's `$/progress`.  This file adds the settings, the status bar and the commands.
 */

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as vscode from 'vscode';
import {
    DidChangeConfigurationNotification,
    ExecuteCommandRequest,
    LanguageClient,
    LanguageClientOptions,
    ServerOptions as LaunchOptions,
    State,
} from 'vscode-languageclient/node';

import { changedOptions, expandPath, PREFIX, serverSettingKeys, toServerOptions } from './settings';
import { ServerStatus, StatusBar } from './status';

/** Settings whose string values are paths (`~` and `${workspaceFolder}` are expanded). */
const PATH_SETTINGS = new Set(['serverPath', 'model.name', 'index.corpusRoots', 'index.indexDir']);
/** Settings that apply only when the server restarts. */
const RESTART_SETTINGS = ['model', 'server.classicCompletion'];

let controller: Controller | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    controller = new Controller(context);
    context.subscriptions.push(
        controller,
        vscode.commands.registerCommand('restLsp.showStatus', () => controller?.showStatus()),
        vscode.commands.registerCommand('restLsp.reindex', () => controller?.reindex()),
        vscode.commands.registerCommand('restLsp.toggle', () => controller?.toggle()),
        vscode.commands.registerCommand('restLsp.acceptLine', acceptLine),
        vscode.commands.registerCommand('restLsp.restart', () => controller?.restart()),
        vscode.workspace.onDidChangeConfiguration((e) => controller?.onConfigurationChanged(e)),
    );
    await controller.start();
}

export async function deactivate(): Promise<void> {
    await controller?.stop();
}

/** The client's lifecycle: one language client per window, restarted on demand. */
class Controller implements vscode.Disposable {
    private client: LanguageClient | undefined;
    private readonly bar = new StatusBar('restLsp.showStatus');
    private readonly output = vscode.window.createOutputChannel('rest-lsp', { log: true });
    private readonly keys: string[];
    private readonly defaults: Record<string, unknown> = {};
    private sent = new Set<string>();
    private refreshing: Promise<void> | undefined;

    constructor(context: vscode.ExtensionContext) {
        const properties: Record<string, { default?: unknown }> =
            context.extension.packageJSON?.contributes?.configuration?.properties ?? {};
        this.keys = serverSettingKeys(properties);
        for (const key of this.keys) {
            this.defaults[key] = properties[`${PREFIX}.${key}`]?.default;
        }
    }

    /** The settings the user has set (any scope), paths expanded. */
    private explicitSettings(): Record<string, unknown> {
        const config = vscode.workspace.getConfiguration(PREFIX);
        const out: Record<string, unknown> = {};
        for (const key of this.keys) {
            const seen = config.inspect(key);
            const value = seen?.workspaceFolderValue ?? seen?.workspaceValue ?? seen?.globalValue;
            if (value !== undefined) {
                out[key] = this.expand(key, value);
            }
        }
        return out;
    }

    private expand(key: string, value: unknown): unknown {
        if (!PATH_SETTINGS.has(key)) {
            return value;
        }
        const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
        const one = (v: unknown) => (typeof v === 'string' ? expandPath(v, os.homedir(), folder) : v);
        return Array.isArray(value) ? value.map(one) : one(value);
    }

    async start(): Promise<void> {
        const configured = vscode.workspace.getConfiguration(PREFIX).get<string>('serverPath') || 'rest-lsp';
        const wanted = this.expand('serverPath', configured) as string;
        const executable = findExecutable(wanted);
        if (executable === undefined) {
            this.bar.set('error', 'server not found');
            const fix = 'Open Settings';
            // not awaited: activation must not wait for the user to answer
            void vscode.window
                .showErrorMessage(
                    `rest-lsp: the server executable "${wanted}" was not found` +
                        (wanted.includes(path.sep) ? '.' : ' on PATH.') +
                        ' Install it (scripts/install.sh in a clone, or pip install its wheel: see its README) and set' +
                        ' "rest-lsp.serverPath" to its full path, e.g. ~/rest-lsp/.venv/bin/rest-lsp.',
                    fix,
                )
                .then((choice) => {
                    if (choice === fix) {
                        void vscode.commands.executeCommand('workbench.action.openSettings', `${PREFIX}.serverPath`);
                    }
                });
            return;
        }
        const explicit = this.explicitSettings();
        this.sent = new Set(Object.keys(explicit));
        const launch: LaunchOptions = { command: executable, args: ['serve', '--stdio'] };
        const bar = this.bar;
        const clientOptions: LanguageClientOptions = {
            documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
            outputChannel: this.output,
            initializationOptions: toServerOptions(explicit),
            middleware: {
                provideInlineCompletionItems: async (document, position, context, token, next) => {
                    bar.busy(true);
                    try {
                        return await next(document, position, context, token);
                    } finally {
                        bar.busy(false);
                        void this.refreshStatus();
                    }
                },
                provideCompletionItem: async (document, position, context, token, next) => {
                    bar.busy(true);
                    try {
                        return await next(document, position, context, token);
                    } finally {
                        bar.busy(false);
                        void this.refreshStatus();
                    }
                },
                handleWorkDoneProgress: (token, params, next) => {
                    bar.onProgress(params.kind, params.message, 'percentage' in params ? params.percentage : undefined);
                    if (params.kind === 'end') {
                        void this.refreshStatus();
                    }
                    next(token, params);
                },
            },
        };
        const client = new LanguageClient('rest-lsp', 'rest-lsp', launch, clientOptions);
        client.onDidChangeState((e) => {
            if (e.newState === State.Stopped) {
                this.bar.set('stopped');
            }
        });
        this.client = client;
        this.bar.set('starting');
        try {
            await client.start();
        } catch (err) {
            this.bar.set('error', 'could not start');
            void vscode.window.showErrorMessage(`rest-lsp: the server did not start (${executable}): ${err}`);
            return;
        }
        void this.refreshStatus();
    }

    async stop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client !== undefined && client.state !== State.Stopped) {
            await client.stop();
        }
    }

    async restart(): Promise<void> {
        await this.stop();
        await this.start();
    }

    private running(): LanguageClient | undefined {
        return this.client?.state === State.Running ? this.client : undefined;
    }

    private async execute<T>(command: string, ...args: unknown[]): Promise<T | undefined> {
        const client = this.running();
        if (client === undefined) {
            void vscode.window.showWarningMessage('rest-lsp: the server is not running (rest-lsp: Restart Server).');
            return undefined;
        }
        return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as T;
    }

    /** Ask the server for its figures and show them in the status bar (one request at a time). */
    refreshStatus(): Promise<void> {
        const client = this.running();
        if (client === undefined || this.refreshing !== undefined) {
            return this.refreshing ?? Promise.resolve();
        }
        this.refreshing = (async () => {
            try {
                const status = (await client.sendRequest(ExecuteCommandRequest.type, {
                    command: 'rest-lsp.status',
                    arguments: [],
                })) as ServerStatus;
                this.bar.update(status);
            } catch (err) {
                this.output.debug(`rest-lsp.status failed: ${err}`);
            } finally {
                this.refreshing = undefined;
            }
        })();
        return this.refreshing;
    }

    async showStatus(): Promise<void> {
        const status = await this.execute<ServerStatus>('rest-lsp.status');
        if (status === undefined) {
            return;
        }
        this.bar.update(status);
        this.output.info(`rest-lsp.status:\n${JSON.stringify(status, null, 2)}`);
        this.output.show(true);
        const model = status.model ?? {};
        const req = status.requests ?? {};
        const summary = [
            `state ${status.state}${status.enabled === false ? ' (completions off)' : ''}`,
            model.source ? `model ${model.source} on ${model.device}` : '',
            req.latency_ms_p50 != null ? `latency p50 ${req.latency_ms_p50} ms` : '',
            req.tokens_per_step != null ? `${req.tokens_per_step} tok/step` : '',
        ].filter((s) => s);
        void vscode.window.showInformationMessage(`rest-lsp: ${summary.join('; ')} (details in the output panel)`);
    }

    async reindex(): Promise<void> {
        const result = await this.execute<{ started?: boolean }>('rest-lsp.reindex');
        if (result?.started) {
            this.bar.set('indexing', 'reindexing');
        }
    }

    async toggle(): Promise<void> {
        const result = await this.execute<{ enabled: boolean }>('rest-lsp.toggle');
        if (result === undefined) {
            return;
        }
        void vscode.window.showInformationMessage(`rest-lsp: completions ${result.enabled ? 'on' : 'off'}`);
        await this.refreshStatus();
    }

    async onConfigurationChanged(e: vscode.ConfigurationChangeEvent): Promise<void> {
        if (!e.affectsConfiguration(PREFIX)) {
            return;
        }
        if (e.affectsConfiguration(`${PREFIX}.serverPath`) || this.client === undefined) {
            await this.restart();
            return;
        }
        const client = this.running();
        if (client === undefined) {
            return;
        }
        const explicit = this.explicitSettings();
        const options = changedOptions(explicit, this.sent, this.defaults);
        this.sent = new Set(Object.keys(explicit));
        await client.sendNotification(DidChangeConfigurationNotification.type, {
            settings: { [PREFIX]: toServerOptions(options) },
        });
        if (RESTART_SETTINGS.some((section) => e.affectsConfiguration(`${PREFIX}.${section}`))) {
            const restart = 'Restart Server';
            const choice = await vscode.window.showInformationMessage(
                'rest-lsp: this setting applies when the server restarts.',
                restart,
            );
            if (choice === restart) {
                await this.restart();
            }
        }
    }

    dispose(): void {
        void this.stop();
        this.bar.dispose();
        this.output.dispose();
    }
}

/**
 * Accept the ghost text shown up to the end of its first line, line break included: the cursor
 * goes to the start of the next line and the rest stays as ghost text, so pressing it again takes
 * the next line.  VS Code's partial acceptance does the edit (undo, indentation and, when the
 * line is all there is, the full acceptance that reaches the server as `rest-lsp.accepted`).
 */
export async function acceptLine(): Promise<void> {
    await vscode.commands.executeCommand('editor.action.inlineSuggest.acceptNextLine');
}

/** The executable: a path (checked) or a name looked up on PATH; undefined when not found. */
export function findExecutable(name: string): string | undefined {
    const isExecutable = (file: string): boolean => {
        try {
            fs.accessSync(file, fs.constants.X_OK);
            return fs.statSync(file).isFile();
        } catch {
            return false;
        }
    };
    const suffixes = process.platform === 'win32' ? ['', '.exe', '.cmd', '.bat'] : [''];
    if (name.includes('/') || name.includes('\\')) {
        const found = suffixes.map((s) => name + s).find(isExecutable);
        return found === undefined ? undefined : path.resolve(found);
    }
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
        if (!dir) {
            continue;
        }
        const found = suffixes.map((s) => path.join(dir, name + s)).find(isExecutable);
        if (found !== undefined) {
            return found;
        }
    }
    return undefined;
}
