/**
 * The notebook's schedules in the sidebar: cron, next fire time, the last run's status, pause/resume and remove,
 * through `/nb2pipe/api/schedules` (which passes them to `nb2pipe schedule`). Listing starts a command on the
 * server, so the list refreshes when the notebook changes, after an action, or on request, not on every edit.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { postAPI, requestAPI } from '../handler';
import { ISchedule } from '../tokens';
import { button, h, section } from './dom';

/** A fire time (ISO-8601 UTC) in the browser's locale and time zone. */
export function whenText(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export class SchedulesView {
  /** `onRefreshed` runs after each reload (the sidebar refreshes its runs list, which scheduled runs join). */
  constructor(
    private _path: () => string | null,
    private _onRefreshed: () => void = () => undefined
  ) {
    const { root, body } = section('Schedules', 'nb2pipe-schedules');
    this._list = h('div', { class: 'nb2pipe-schedule-list' });
    this._status = h('div', { class: 'nb2pipe-schedules-status', role: 'status' });
    body.append(
      this._list,
      h('div', { class: 'nb2pipe-row' }, button('Refresh', 'nb2pipe-schedules-refresh', () => void this.refresh())),
      this._status
    );
    this.node = root;
  }

  readonly node: HTMLElement;

  /** Reload the schedules of the current notebook. */
  async refresh(): Promise<void> {
    const path = this._path();
    if (!path) {
      this._list.replaceChildren();
      return;
    }
    const seq = ++this._seq;
    let schedules: ISchedule[];
    try {
      schedules = await requestAPI<ISchedule[]>(`schedules?path=${encodeURIComponent(path)}`);
    } catch (err) {
      this._say((err as Error).message, true);
      return;
    }
    if (seq !== this._seq || path !== this._path()) {
      return;
    }
    this._list.replaceChildren(...schedules.map(s => this._row(s)));
    if (!schedules.length) {
      this._list.append(h('p', { class: 'nb2pipe-hint' }, 'No schedules for this notebook.'));
    }
    this._onRefreshed();
  }

  private _row(s: ISchedule): HTMLElement {
    const last = s.last_run;
    const name = encodeURIComponent(s.name);
    return h(
      'div',
      {
        class: `nb2pipe-schedule-item${s.paused ? ' nb2pipe-schedule-paused' : ''}`,
        'data-schedule': s.name
      },
      h('span', { class: 'nb2pipe-schedule-title' }, s.name),
      h('code', { class: 'nb2pipe-schedule-cron', title: s.timezone }, s.cron),
      h(
        'div',
        { class: 'nb2pipe-schedule-next' },
        s.paused ? 'paused' : `next ${whenText(s.next_fire)}`
      ),
      h(
        'div',
        { class: 'nb2pipe-schedule-last' },
        last
          ? h('span', { class: `nb2pipe-run-status nb2pipe-run-${last.status}` }, `last run ${last.status}`)
          : 'no run yet'
      ),
      h(
        'span',
        { class: 'nb2pipe-schedule-controls' },
        s.paused
          ? button('Resume', 'nb2pipe-schedule-resume', () => void this._act(`schedules/${name}/resume`, 'resumed'))
          : button('Pause', 'nb2pipe-schedule-pause', () => void this._act(`schedules/${name}/pause`, 'paused')),
        button('Remove', 'nb2pipe-schedule-remove', () => void this._remove(s.name))
      )
    );
  }

  private async _act(endpoint: string, done: string): Promise<void> {
    try {
      await postAPI(endpoint, {});
      this._say(`schedule ${done}`);
    } catch (err) {
      this._say((err as Error).message, true);
    }
    await this.refresh();
  }

  private async _remove(name: string): Promise<void> {
    const answer = await showDialog({
      title: `Remove schedule ${name}?`,
      body: 'It stops firing; its history stays in the run store.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Remove' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await requestAPI(`schedules/${encodeURIComponent(name)}`, { method: 'DELETE' });
      this._say(`schedule ${name} removed`);
    } catch (err) {
      this._say((err as Error).message, true);
    }
    await this.refresh();
  }

  private _say(text: string, error = false): void {
    this._status.textContent = text;
    this._status.classList.toggle('nb2pipe-status-error', error);
  }

  private _list: HTMLElement;
  private _status: HTMLElement;
  private _seq = 0;
}
