/**
 * A run's executed notebook, read-only, in a main-area tab: JupyterLab's own notebook widget (StaticNotebook, the
 * notebook without its interactive layer) over a notebook model loaded from `GET /nb2pipe/api/runs/ID/notebook`.
 *
 * Why this view: the outputs render exactly as in any notebook tab (same renderers, theme, collapsing, copy), with
 * no kernel, no file and no contents-manager path: the run folder is hidden from the contents manager on purpose,
 * and a copy of the notebook in the user's tree would be mistaken for the original. Outputs are loaded untrusted,
 * as JupyterLab does for a notebook it did not execute itself: HTML is sanitised and scripts do not run.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { NotebookModel, StaticNotebook } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { notebookIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { requestAPI } from '../handler';
import { IRun } from '../tokens';
import { h } from './dom';

export interface IExecutedServices {
  rendermime: IRenderMimeRegistry;
  editorServices: IEditorServices;
  contentFactory: StaticNotebook.IContentFactory;
}

/** The read-only editor settings: code, markdown and raw cells cannot be edited. */
const READ_ONLY = {
  code: { ...StaticNotebook.defaultEditorConfig.code, readOnly: true },
  markdown: { ...StaticNotebook.defaultEditorConfig.markdown, readOnly: true },
  raw: { ...StaticNotebook.defaultEditorConfig.raw, readOnly: true }
};

/** The tab title of a run's executed notebook. */
export function executedTitle(run: IRun): string {
  const name = run.target.split('/').pop() ?? run.target;
  return `${name} · run ${run.id.slice(-6)}`;
}

/** Build the widget for `notebook` (nbformat JSON) executed by `run`. */
export function executedWidget(
  run: IRun,
  notebook: Record<string, any>,
  services: IExecutedServices
): MainAreaWidget<StaticNotebook> {
  const model = new NotebookModel();
  model.fromJSON(notebook as any);
  model.readOnly = true;
  const content = new StaticNotebook({
    rendermime: services.rendermime,
    contentFactory: services.contentFactory,
    mimeTypeService: services.editorServices.mimeTypeService,
    editorConfig: READ_ONLY,
    notebookConfig: { ...StaticNotebook.defaultNotebookConfig, windowingMode: 'none' }
  });
  content.model = model;
  content.addClass('nb2pipe-executed-notebook');
  for (const cell of content.widgets) {
    cell.readOnly = true;
  }
  const widget = new MainAreaWidget({ content });
  widget.id = `nb2pipe-run-${run.id}`;
  widget.addClass('nb2pipe-executed');
  widget.title.label = executedTitle(run);
  widget.title.caption = `${run.target}, executed by run ${run.id} (${run.status}); read-only`;
  widget.title.icon = notebookIcon;
  widget.title.closable = true;
  const note = h(
    'span',
    { class: `nb2pipe-executed-note nb2pipe-run-${run.status}` },
    `Executed by run ${run.id} · ${run.status} · read-only`
  );
  widget.toolbar.addItem('nb2pipe-run-note', new Widget({ node: note }));
  widget.disposed.connect(() => model.dispose());
  markError(content, run);
  return widget;
}

/** A failed run: mark the cell that raised and bring it into view once the tab is shown. */
function markError(content: StaticNotebook, run: IRun): void {
  const index = run.error_cell_id
    ? content.widgets.findIndex(c => c.model.id === run.error_cell_id)
    : run.error_cell
      ? run.error_cell - 1
      : -1;
  const cell = index >= 0 ? content.widgets[index] : undefined;
  if (cell) {
    cell.addClass('nb2pipe-executed-error');
    requestAnimationFrame(() => cell.node.scrollIntoView({ block: 'center' }));
  }
}

/** Fetch the executed notebook of `run` and build its widget. */
export async function loadExecuted(run: IRun, services: IExecutedServices): Promise<MainAreaWidget<StaticNotebook>> {
  const id = run.launch_id ?? run.id;
  const notebook = await requestAPI<Record<string, any>>(`runs/${encodeURIComponent(id)}/notebook`);
  return executedWidget(run, notebook, services);
}
