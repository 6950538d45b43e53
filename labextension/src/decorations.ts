/**
 * The coloured stage edge and label on each cell of the notebook: data attributes and a CSS variable on the cell
 * node, drawn by style/base.css (no extra DOM inside JupyterLab's cell layout).
 */
import { Notebook } from '@jupyterlab/notebook';
import { cellTags } from './editing';
import { roleOf, stageByCell } from './tagmodel';

/** Mark every cell with its stage (colour + label) or its role; `color(stage)` is the stage's colour. */
export function decorate(notebook: Notebook, color: (stage: string) => string): void {
  const cells = cellTags(notebook);
  const stages = stageByCell(cells);
  notebook.widgets.forEach((cell, i) => {
    const node = cell.node;
    const stage = stages.get(cells[i].id);
    const role = cells[i].type === 'code' ? roleOf(cells[i].tags) : null;
    const label = stage ? `stage: ${stage}` : role ?? '';
    node.classList.toggle('nb2pipe-staged', !!label);
    if (!label) {
      delete node.dataset.nb2pipeStage;
      delete node.dataset.nb2pipeLabel;
      node.style.removeProperty('--nb2pipe-stage-color');
      return;
    }
    node.dataset.nb2pipeStage = stage ?? '';
    node.dataset.nb2pipeLabel = label;
    node.style.setProperty('--nb2pipe-stage-color', stage ? color(stage) : 'var(--jp-border-color1)');
  });
}
