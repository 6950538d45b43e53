/**
 * Actions on the pipeline (export, run with a parameters form, run as a tracked job, schedule) and the runs list,
 * all through the server extension. Runs are started in the background by the server; the list polls while any is
 * active.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { jumpToCell } from '../editing';
import { postAPI, requestAPI } from '../handler';
import { IAnalysis, IRun } from '../tokens';
import { button, h, section } from './dom';
import { SchedulesView } from './schedules';

const ACTIVE = ['queued', 'running'];

function seconds(value: number | null): string {
  return value === null || value === undefined ? '' : `${value.toFixed(1)} s`;
}

export class ActionsView {
  constructor(
    private _outputDir: string,
    private _notebook: () => NotebookPanel | null,
    private _analysis: () => IAnalysis | null,
    private _openRun: ((run: IRun) => Promise<void>) | null = null
  ) {
    const actions = section('Actions', 'nb2pipe-actions');
    const runs = section('Runs', 'nb2pipe-runs');
    this._output = h('input', { class: 'nb2pipe-output', value: _outputDir, 'aria-label': 'export folder' });
    this._form = h('form', { class: 'nb2pipe-params' });
    this._form.addEventListener('submit', e => e.preventDefault());
    this._cron = h('input', { class: 'nb2pipe-cron', placeholder: '30 2 * * *', 'aria-label': 'cron expression' });
    this._scheduleName = h('input', { class: 'nb2pipe-schedule-name', placeholder: 'schedule name' });
    this._result = h('div', { class: 'nb2pipe-result', role: 'status' });
    actions.body.append(
      h('div', { class: 'nb2pipe-row' }, this._output, button('Export', 'nb2pipe-export', () => void this.export())),
      this._form,
      h(
        'div',
        { class: 'nb2pipe-row' },
        button('Run pipeline', 'nb2pipe-run', () => void this.start('pipeline')),
        button('Run as job', 'nb2pipe-job', () => void this.start('job'))
      ),
      h(
        'div',
        { class: 'nb2pipe-row' },
        this._scheduleName,
        this._cron,
        button('Schedule', 'nb2pipe-schedule', () => void this.schedule())
      ),
      this._result
    );
    this._runs = runs.body;
    this.schedules = new SchedulesView(
      () => this._notebook()?.context.path ?? null,
      () => void this.refreshRuns()
    );
    this.node = h('div', { class: 'nb2pipe-actions-view' }, actions.root, runs.root, this.schedules.node);
  }

  readonly node: HTMLElement;
  readonly schedules: SchedulesView;

  /** Redraw the parameters form (from the parameters cell) and the runs list. */
  render(): void {
    const params = this._analysis()?.parameters ?? [];
    const key = JSON.stringify(params);
    if (key !== this._formKey) {
      this._formKey = key;
      this._form.replaceChildren();
      for (const p of params) {
        const value = typeof p.default === 'string' ? p.default : JSON.stringify(p.default);
        const input =
          p.type === 'bool'
            ? h('input', { type: 'checkbox', name: p.name, ...(p.default ? { checked: '' } : {}) })
            : h('input', {
                name: p.name,
                value,
                type: p.type === 'int' || p.type === 'float' ? 'number' : 'text',
                step: p.type === 'float' ? 'any' : '1'
              });
        this._form.append(h('label', { class: 'nb2pipe-param' }, h('span', {}, `${p.name}: ${p.type}`), input));
      }
    }
    void this.refreshRuns();
  }

  /** The form's values, only those changed from their defaults, as typed values. */
  parameters(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const p of this._analysis()?.parameters ?? []) {
      const input = this._form.querySelector<HTMLInputElement>(`input[name="${p.name}"]`);
      if (!input) {
        continue;
      }
      const value: unknown =
        p.type === 'bool'
          ? input.checked
          : p.type === 'int' || p.type === 'float'
            ? Number(input.value)
            : input.value;
      const same = typeof p.default === 'string' ? value === p.default : JSON.stringify(p.default) === input.value;
      if (!same && !(p.type === 'bool' && value === p.default)) {
        out[p.name] = value;
      }
    }
    return out;
  }

  async export(): Promise<void> {
    await this._do(async path => {
      const r = await postAPI<any>('export', { path, output: this._output.value || this._outputDir });
      return `exported to ${r.directory}: ${r.written.length} file(s) written`;
    });
  }

  async start(kind: 'pipeline' | 'job'): Promise<void> {
    await this._do(async path => {
      const r = await postAPI<IRun>('runs', { kind, path, parameters: this.parameters() });
      void this.refreshRuns();
      return `${kind === 'job' ? 'job' : 'run'} ${r.id} started`;
    });
  }

  async schedule(): Promise<void> {
    await this._do(async path => {
      await postAPI('schedules', {
        name: this._scheduleName.value.trim(),
        path,
        cron: this._cron.value.trim(),
        parameters: this.parameters()
      });
      void this.schedules.refresh();
      return `schedule ${this._scheduleName.value.trim()} added`;
    });
  }

  async refreshRuns(): Promise<void> {
    const path = this._notebook()?.context.path;
    if (!path) {
      this._runs.replaceChildren();
      return;
    }
    let runs: IRun[];
    try {
      runs = (await requestAPI<{ runs: IRun[] }>(`runs?limit=20&path=${encodeURIComponent(path)}`)).runs;
    } catch {
      return;
    }
    this._runs.replaceChildren(...runs.map(r => this._runRow(r)));
    if (!runs.length) {
      this._runs.append(h('p', { class: 'nb2pipe-hint' }, 'No runs of this notebook yet.'));
    }
    window.clearTimeout(this._poll);
    if (runs.some(r => ACTIVE.includes(r.status))) {
      this._poll = window.setTimeout(() => void this.refreshRuns(), 1500);
    }
  }

  private _runRow(r: IRun): HTMLElement {
    const params = Object.entries(r.parameters)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' ');
    const metrics = Object.entries(r.metrics ?? {})
      .map(([k, v]) => `${k}=${typeof v === 'number' ? v.toPrecision(3) : JSON.stringify(v)}`)
      .join(' ');
    const failure =
      r.status === 'failed'
        ? r.error_message
          ? `cell ${r.error_cell ?? '?'}: ${r.error_name ?? ''} ${r.error_message}`
          : (r.stderr ?? '').trim().split('\n').pop() ?? ''
        : '';
    const error = failure ? h('div', { class: 'nb2pipe-run-error' }, failure) : '';
    const nb = this._notebook()?.content;
    if (error && nb && (r.error_cell_id || r.error_cell)) {
      error.title = 'Show the cell';
      error.classList.add('nb2pipe-clickable');
      error.addEventListener('click', () => jumpToCell(nb, r.error_cell_id ?? null, r.error_cell ?? null));
    }
    const id = r.launch_id ?? r.id;
    const open =
      r.has_notebook && this._openRun
        ? button('Executed notebook', 'nb2pipe-run-open', () => void this._open(r), 'Open the executed notebook')
        : '';
    return h(
      'div',
      { class: `nb2pipe-run-item nb2pipe-run-${r.status}`, 'data-run': r.id },
      h('span', { class: 'nb2pipe-run-status' }, r.status),
      h('span', { class: 'nb2pipe-run-kind' }, r.kind),
      h('code', { class: 'nb2pipe-run-id' }, r.id),
      h('span', { class: 'nb2pipe-run-duration' }, seconds(r.duration)),
      ACTIVE.includes(r.status) && r.launch_id !== undefined
        ? button('Cancel', 'nb2pipe-run-cancel', () => void this._cancel(id))
        : '',
      params ? h('div', { class: 'nb2pipe-run-params' }, params) : '',
      metrics ? h('div', { class: 'nb2pipe-run-metrics' }, metrics) : '',
      error,
      open
    );
  }

  private async _open(run: IRun): Promise<void> {
    try {
      await this._openRun?.(run);
    } catch (err) {
      this._result.textContent = `cannot open the executed notebook of ${run.id}: ${(err as Error).message}`;
      this._result.classList.add('nb2pipe-status-error');
    }
  }

  private async _cancel(id: string): Promise<void> {
    await this._do(async () => {
      await postAPI(`runs/${encodeURIComponent(id)}/cancel`, {});
      void this.refreshRuns();
      return `cancel requested for ${id}`;
    });
  }

  private async _do(action: (path: string) => Promise<string>): Promise<void> {
    const path = this._notebook()?.context.path;
    if (!path) {
      return;
    }
    this._result.classList.remove('nb2pipe-status-error');
    try {
      this._result.textContent = await action(path);
    } catch (err) {
      this._result.textContent = (err as Error).message;
      this._result.classList.add('nb2pipe-status-error');
    }
  }

  private _output: HTMLInputElement;
  private _form: HTMLFormElement;
  private _cron: HTMLInputElement;
  private _scheduleName: HTMLInputElement;
  private _result: HTMLElement;
  private _runs: HTMLElement;
  private _formKey = '';
  private _poll = 0;
}
