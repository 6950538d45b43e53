/**
 * nb2pipe's JupyterLab extension: the "Pipeline" left sidebar, stage colours on cells, and tagging commands with
 * keyboard shortcuts (settings in schema/plugin.json).
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { IRun } from './tokens';
import { IExecutedServices, loadExecuted } from './widgets/executed';
import { PipelinePanel } from './widgets/panel';

const PLUGIN_ID = 'nb2pipe:plugin';

const pipelineIcon = new LabIcon({
  name: 'nb2pipe:pipeline',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="3" width="8" height="5" rx="1"/><rect x="14" y="9.5" width="8" height="5" rx="1"/>' +
    '<rect x="2" y="16" width="8" height="5" rx="1"/><path d="M10 5.5h2v6.5h2v1h-3v-6.5h-1zM10 18.5h2v-6h1v7h-3z"/>' +
    '</g></svg>'
});

export const COMMANDS = {
  assign: 'nb2pipe:assign-stage',
  parameters: 'nb2pipe:mark-parameters',
  shared: 'nb2pipe:mark-shared',
  skip: 'nb2pipe:mark-skip',
  clear: 'nb2pipe:clear-tags',
  open: 'nb2pipe:open-sidebar'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Tag notebook cells into pipeline stages, see the DAG, export, run and schedule it.',
  autoStart: true,
  requires: [INotebookTracker, ILabShell],
  optional: [ICommandPalette, ISettingRegistry, IRenderMimeRegistry, IEditorServices, NotebookPanel.IContentFactory],
  activate: async (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    shell: ILabShell,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    rendermime: IRenderMimeRegistry | null,
    editorServices: IEditorServices | null,
    contentFactory: NotebookPanel.IContentFactory | null
  ) => {
    let debounceMs = 500;
    let outputDir = 'pipelines';
    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        debounceMs = settings.get('debounceMs').composite as number;
        outputDir = settings.get('outputDir').composite as string;
      } catch (err) {
        console.warn('nb2pipe: settings not loaded', err);
      }
    }
    const services: IExecutedServices | null =
      rendermime && editorServices && contentFactory ? { rendermime, editorServices, contentFactory } : null;
    const openRun = services ? (run: IRun) => openExecuted(shell, run, services) : undefined;
    const panel = new PipelinePanel({ debounceMs, outputDir, openRun });
    panel.title.icon = pipelineIcon;
    panel.title.label = 'Pipeline';
    shell.add(panel, 'left', { rank: 600 });
    tracker.currentChanged.connect((_, nb) => panel.setNotebook(nb));
    panel.setNotebook(tracker.currentWidget);

    const isEnabled = () => !!tracker.currentWidget;
    app.commands.addCommand(COMMANDS.assign, {
      label: 'Pipeline: Assign Selected Cells to a Stage…',
      isEnabled,
      execute: async () => {
        const { InputDialog } = await import('@jupyterlab/apputils');
        const result = await InputDialog.getText({ title: 'Stage name' });
        if (result.button.accept && result.value) {
          panel.assign(result.value.trim());
        }
      }
    });
    const roles = [
      [COMMANDS.parameters, 'Pipeline: Mark as Parameters Cell', 'parameters'],
      [COMMANDS.shared, 'Pipeline: Mark as Shared (imports, helpers)', 'shared'],
      [COMMANDS.skip, 'Pipeline: Skip Cells', 'skip'],
      [COMMANDS.clear, 'Pipeline: Clear Pipeline Tags', null]
    ] as const;
    for (const [id, label, role] of roles) {
      app.commands.addCommand(id, { label, isEnabled, execute: () => panel.setRole(role) });
    }
    app.commands.addCommand(COMMANDS.open, {
      label: 'Pipeline: Show the Pipeline Sidebar',
      execute: () => shell.activateById(panel.id)
    });
    for (const id of Object.values(COMMANDS)) {
      palette?.addItem({ command: id, category: 'Pipeline' });
    }
  }
};

/** Open (or bring back) the read-only tab of a run's executed notebook, next to the notebook tabs. */
async function openExecuted(shell: ILabShell, run: IRun, services: IExecutedServices): Promise<void> {
  const open = executedTabs.get(run.id);
  if (open && !open.isDisposed) {
    shell.activateById(open.id);
    return;
  }
  const widget = await loadExecuted(run, services);
  executedTabs.set(run.id, widget);
  widget.disposed.connect(() => executedTabs.delete(run.id));
  shell.add(widget, 'main', { mode: 'tab-after' });
  shell.activateById(widget.id);
}

const executedTabs = new Map<string, MainAreaWidget>();

export default plugin;
