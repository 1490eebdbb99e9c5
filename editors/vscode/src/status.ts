/** The status-bar item: indexing progress, ready/busy/off, last latency and tokens per step. */

import * as vscode from 'vscode';

/** The parts of `rest-lsp.status` the status bar shows. */
export interface ServerStatus {
    state?: string;
    enabled?: boolean;
    model?: { source?: string; device?: string; dtype?: string; [key: string]: unknown };
    last_completion?: { latency_ms?: number; tokens_per_step?: number; new_tokens?: number } | null;
    requests?: { latency_ms_p50?: number | null; tokens_per_step?: number | null; requests?: number };
    [key: string]: unknown;
}

export type Phase = 'starting' | 'indexing' | 'ready' | 'busy' | 'off' | 'stopped' | 'error';

export class StatusBar implements vscode.Disposable {
    private readonly item: vscode.StatusBarItem;
    private phase: Phase = 'starting';
    private progress = '';
    private figures = '';
    private busyCount = 0;

    constructor(command: string) {
        this.item = vscode.window.createStatusBarItem('rest-lsp.status', vscode.StatusBarAlignment.Right, 100);
        this.item.name = 'rest-lsp';
        this.item.command = command;
        this.render();
        this.item.show();
    }

    /** Work-done progress from the server (`$/progress`). */
    onProgress(kind: 'begin' | 'report' | 'end', message?: string, percentage?: number): void {
        if (kind === 'end') {
            this.progress = '';
            if (this.phase === 'indexing' || this.phase === 'starting') {
                this.phase = 'ready';
            }
        } else {
            this.phase = 'indexing';
            const pct = percentage === undefined ? '' : `${Math.round(percentage)}%`;
            this.progress = [pct, message ?? ''].filter((s) => s).join(' ');
        }
        this.render();
    }

    /** A completion request started (true) or ended (false). */
    busy(on: boolean): void {
        this.busyCount = Math.max(0, this.busyCount + (on ? 1 : -1));
        this.render();
    }

    /** The figures of `rest-lsp.status`. */
    update(status: ServerStatus): void {
        if (status.enabled === false) {
            this.phase = 'off';
        } else if (status.state === 'ready') {
            this.phase = 'ready';
        } else if (status.state === 'failed' || status.state === 'error') {
            this.phase = 'error';
        } else if (this.phase !== 'indexing') {
            this.phase = 'starting';
        }
        const last = status.last_completion;
        const parts: string[] = [];
        if (last && typeof last.latency_ms === 'number') {
            parts.push(`${Math.round(last.latency_ms)} ms`);
        }
        if (last && typeof last.tokens_per_step === 'number') {
            parts.push(`${last.tokens_per_step.toFixed(1)} tok/step`);
        }
        this.figures = parts.join(' · ');
        this.render();
    }

    set(phase: Phase, detail = ''): void {
        this.phase = phase;
        if (detail) {
            this.progress = detail;
        }
        this.render();
    }

    get current(): Phase {
        return this.phase;
    }

    private render(): void {
        const busy = this.busyCount > 0 && this.phase === 'ready';
        const icon = {
            starting: '$(loading~spin)',
            indexing: '$(loading~spin)',
            ready: busy ? '$(sync~spin)' : '$(check)',
            busy: '$(sync~spin)',
            off: '$(circle-slash)',
            stopped: '$(debug-disconnect)',
            error: '$(error)',
        }[this.phase];
        let text = `${icon} rest-lsp`;
        if (this.phase === 'indexing' && this.progress) {
            text += ` ${this.progress}`;
        } else if (this.phase === 'ready' && this.figures) {
            text += ` ${this.figures}`;
        } else if (this.phase === 'off') {
            text += ' off';
        }
        this.item.text = text;
        const tooltips: Record<Phase, string> = {
            starting: 'rest-lsp: starting (loading the model)',
            indexing: `rest-lsp: indexing ${this.progress}`,
            ready: busy ? 'rest-lsp: completing…' : `rest-lsp: ready${this.figures ? ` (last completion: ${this.figures})` : ''}`,
            busy: 'rest-lsp: completing…',
            off: 'rest-lsp: completions are off (rest-lsp: Toggle Completions, Shift+Alt+T)',
            stopped: 'rest-lsp: the server is not running',
            error: `rest-lsp: error ${this.progress}`,
        };
        this.item.tooltip = `${tooltips[this.phase]}\nClick for details`;
        // the first tooltip line is also the accessible label (screen readers, and the e2e test)
        this.item.accessibilityInformation = { label: tooltips[this.phase], role: 'button' };
        this.item.backgroundColor =
            this.phase === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    }

    dispose(): void {
        this.item.dispose();
    }
}
