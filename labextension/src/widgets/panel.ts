/**
 * The "Pipeline" left sidebar for the active notebook: stages (from the tags, live), tagging actions on the
 * selected cells, the DAG and problems from the analyze endpoint, and the actions and runs (see actions.ts).
 */
import { InputDialog } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';
import { drawDag } from '../dag';
import { decorate } from '../decorations';
import { cellTags, editTags, jumpToCell, selectedCells } from '../editing';
import { postAPI } from '../handler';
import {
  IStage,
  Role,
  renamed,
  stageColor,
  stageNameProblem,
  stagesOf,
  withAfter,
  withoutStage,
  withRole,
  withStage
} from '../tagmodel';
import { IAnalysis, IRun } from '../tokens';
import { ActionsView } from './actions';
import { button, h, section } from './dom';

export class PipelinePanel extends Widget {
  constructor(options: {
    debounceMs: number;
    outputDir: string;
    openRun?: (run: IRun) => Promise<void>;
  }) {
    super();
    this.id = 'nb2pipe-pipeline';
    this.addClass('nb2pipe-panel');
    this.title.caption = 'Pipeline';
    this._debounceMs = options.debounceMs;
    this.actions = new ActionsView(
      options.outputDir,
      () => this._notebook,
      () => this._analysis,
      options.openRun ?? null
    );
    this._build();
  }

  /** Follow another notebook (or none). */
  setNotebook(panel: NotebookPanel | null): void {
    if (this._notebook === panel) {
      return;
    }
    if (this._notebook && !this._notebook.isDisposed) {
      this._notebook.model?.contentChanged.disconnect(this._changed, this);
      this._notebook.content.activeCellChanged.disconnect(this._renderStages, this);
      this._notebook.content.selectionChanged.disconnect(this._renderStages, this);
    }
    this._notebook = panel;
    this._analysis = null;
    void this.actions.schedules.refresh();
    if (panel) {
      void panel.context.ready.then(() => {
        if (this._notebook !== panel) {
          return;
        }
        panel.model?.contentChanged.connect(this._changed, this);
        panel.model?.cells.changed.connect(this._watchCells, this);
        this._watchCells();
        panel.content.activeCellChanged.connect(this._renderStages, this);
        panel.content.selectionChanged.connect(this._renderStages, this);
        this._changed();
      });
    }
    this._render();
  }

  /** Assign the selected cells to stage `name` (the first selected cell gets the stage tag). */
  assign(name: string): void {
    const problem = stageNameProblem(name);
    if (problem) {
      this._message(problem, true);
      return;
    }
    const nb = this._notebook?.content;
    if (!nb) {
      return;
    }
    const cells = selectedCells(nb).filter(c => c.model.type === 'code');
    editTags(nb, cells, (tags, cell) => (cell === cells[0] ? withStage(tags, name) : withStage(tags, null)));
    this._message(`${cells.length} cell(s) → stage ${name}`);
  }

  /** Give the selected cells a role (parameters, shared, skip) or clear their tags (null). */
  setRole(role: Role | null): void {
    const nb = this._notebook?.content;
    if (!nb) {
      return;
    }
    editTags(nb, selectedCells(nb), tags => (role ? withRole(tags, role) : withStage(withRole(tags, null), null)));
  }

  async rename(stage: IStage): Promise<void> {
    const nb = this._notebook?.content;
    const result = await InputDialog.getText({ title: `Rename stage ${stage.name}`, text: stage.name });
    const name = result.value?.trim();
    if (!nb || !result.button.accept || !name || name === stage.name) {
      return;
    }
    const problem = stageNameProblem(name);
    if (problem) {
      this._message(problem, true);
      return;
    }
    editTags(nb, nb.widgets, tags => renamed(tags, stage.name, name));
  }

  remove(stage: IStage): void {
    const nb = this._notebook?.content;
    if (nb) {
      editTags(nb, nb.widgets, tags => withoutStage(tags, stage.name));
    }
  }

  addAfter(stage: IStage, target: string): void {
    const nb = this._notebook?.content;
    const first = nb?.widgets.find(c => c.model.id === stage.cells[0]);
    if (nb && first && target) {
      editTags(nb, [first], tags => withAfter(tags, target));
    }
  }

  /** Colour of a stage, the same in the sidebar, on the cells and in the DAG. */
  color(name: string): string {
    return stageColor(name);
  }

  private _build(): void {
    const input = h('input', { class: 'nb2pipe-stage-input', placeholder: 'stage name', 'aria-label': 'stage name' });
    input.addEventListener('keydown', e => {
      if (e.key === 'Enter') {
        this.assign(input.value.trim());
      }
    });
    const tag = section('Selected cells', 'nb2pipe-tagging');
    tag.body.append(
      h(
        'div',
        { class: 'nb2pipe-row' },
        input,
        button('Assign', 'nb2pipe-assign', () => this.assign(input.value.trim()), 'Start a stage at the selected cells')
      ),
      h(
        'div',
        { class: 'nb2pipe-row' },
        button('Parameters', 'nb2pipe-role-parameters', () => this.setRole('parameters')),
        button('Shared', 'nb2pipe-role-shared', () => this.setRole('shared')),
        button('Skip', 'nb2pipe-role-skip', () => this.setRole('skip')),
        button('Clear', 'nb2pipe-role-clear', () => this.setRole(null))
      )
    );
    const stages = section('Stages', 'nb2pipe-stages');
    const dag = section('Pipeline', 'nb2pipe-pipeline-view');
    this._header = h('div', { class: 'nb2pipe-header' });
    this._status = h('div', { class: 'nb2pipe-status', role: 'status' });
    this._stagesBody = stages.body;
    this._dagBody = dag.body;
    this.node.append(this._header, this._status, tag.root, stages.root, dag.root, this.actions.node);
  }

  /** Tag edits change cell metadata, which the notebook's contentChanged does not report: watch every cell. */
  private _watchCells(): void {
    const model = this._notebook?.model;
    if (!model) {
      return;
    }
    for (let i = 0; i < model.cells.length; i++) {
      model.cells.get(i).metadataChanged.connect(this._changed, this);
    }
    this._changed();
  }

  private _changed(): void {
    this._renderStages();
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._analyze(), this._debounceMs);
  }

  private async _analyze(): Promise<void> {
    const panel = this._notebook;
    if (!panel?.model) {
      return;
    }
    const seq = ++this._seq;
    try {
      const analysis = await postAPI<IAnalysis>('analyze', {
        path: panel.context.path,
        notebook: panel.model.toJSON()
      });
      if (seq === this._seq && panel === this._notebook) {
        this._analysis = analysis;
        this._renderStages();
        this._renderDag();
        this.actions.render();
      }
    } catch (err) {
      this._message(`analysis failed: ${(err as Error).message}`, true);
    }
  }

  private _render(): void {
    this._header.textContent = this._notebook ? this._notebook.context.path : 'Open a notebook to tag its stages.';
    this._renderStages();
    this._renderDag();
    this.actions.render();
  }

  private _renderStages(): void {
    const nb = this._notebook?.content;
    this._stagesBody.replaceChildren();
    this._stages = nb ? stagesOf(cellTags(nb)) : [];
    if (nb) {
      decorate(nb, name => this.color(name));
    }
    for (const stage of this._stages) {
      const after = h('select', { class: 'nb2pipe-after', title: 'run after' }, h('option', { value: '' }, 'after…'));
      for (const other of this._stages) {
        if (other.name !== stage.name) {
          after.append(h('option', { value: other.name }, other.name));
        }
      }
      after.addEventListener('change', () => this.addAfter(stage, after.value));
      const dropped = !!this._analysis?.ok && !this._analysis.stages.some(s => s.name === stage.name);
      const row = h(
        'div',
        {
          class: dropped ? 'nb2pipe-stage nb2pipe-stage-dropped' : 'nb2pipe-stage',
          'data-stage': stage.name,
          title: dropped ? 'No pipeline code of its own: its imports and helpers go where they are used' : ''
        },
        h('span', { class: 'nb2pipe-swatch', style: `background:${this.color(stage.name)}` }),
        h('span', { class: 'nb2pipe-stage-name' }, stage.name),
        h('span', { class: 'nb2pipe-stage-cells' }, `${stage.cells.length} cell(s)`),
        stage.after.length ? h('span', { class: 'nb2pipe-stage-after' }, `after ${stage.after.join(', ')}`) : '',
        h(
          'span',
          { class: 'nb2pipe-stage-controls' },
          button('+', 'nb2pipe-stage-add', () => this.assign(stage.name), `Assign the selected cells to ${stage.name}`),
          button('✎', 'nb2pipe-stage-rename', () => void this.rename(stage), `Rename ${stage.name}`),
          button('✕', 'nb2pipe-stage-remove', () => this.remove(stage), `Remove stage ${stage.name}`),
          after
        )
      );
      row.querySelector('.nb2pipe-stage-name')!.addEventListener('click', () => jumpToCell(nb!, stage.cells[0], null));
      this._stagesBody.append(row);
    }
    if (nb && !this._stages.length) {
      this._stagesBody.append(h('p', { class: 'nb2pipe-hint' }, 'No stages yet: select cells and assign a stage.'));
    }
  }

  private _renderDag(): void {
    const a = this._analysis;
    const nb = this._notebook?.content;
    this._dagBody.replaceChildren();
    if (!a || !nb) {
      return;
    }
    if (a.ok) {
      this._dagBody.append(drawDag(a, name => this.color(name)));
    }
    const problems = [
      ...a.errors.map(p => ({ ...p, level: 'error' })),
      ...a.warnings.map(p => ({ ...p, level: 'warning' }))
    ];
    for (const p of problems) {
      const item = h('button', { class: `nb2pipe-problem nb2pipe-${p.level}`, type: 'button' }, p.message);
      item.addEventListener('click', () => jumpToCell(nb, p.cell_id, p.cell));
      this._dagBody.append(item);
    }
  }

  private _message(text: string, error = false): void {
    this._status.textContent = text;
    this._status.classList.toggle('nb2pipe-status-error', error);
  }

  readonly actions: ActionsView;
  private _notebook: NotebookPanel | null = null;
  private _analysis: IAnalysis | null = null;
  private _stages: IStage[] = [];
  private _debounceMs: number;
  private _timer = 0;
  private _seq = 0;
  private _header!: HTMLElement;
  private _status!: HTMLElement;
  private _stagesBody!: HTMLElement;
  private _dagBody!: HTMLElement;
}
