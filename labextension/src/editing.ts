/**
 * Edits of `metadata.tags` on a notebook, always through the shared model in one transaction, so that one sidebar
 * action is one step in the notebook's undo history (undo with `z` in command mode, as for any cell edit).
 */
import { Cell } from '@jupyterlab/cells';
import { Notebook } from '@jupyterlab/notebook';
import { ICellTags } from './tagmodel';

/** The tags of a cell model, as a fresh list. */
export function tagsOf(cell: Cell): string[] {
  const tags = cell.model.getMetadata('tags');
  return Array.isArray(tags) ? tags.map(String) : [];
}

/** The notebook's cells as the tag model sees them. */
export function cellTags(notebook: Notebook): ICellTags[] {
  return notebook.widgets.map(cell => ({ id: cell.model.id, type: cell.model.type, tags: tagsOf(cell) }));
}

/** The selected cells (or the active one when nothing else is selected). */
export function selectedCells(notebook: Notebook): Cell[] {
  return notebook.widgets.filter(cell => notebook.isSelectedOrActive(cell));
}

/** Apply `edit` to the tags of `cells` in one undoable transaction; cells whose tags do not change are left alone. */
export function editTags(notebook: Notebook, cells: readonly Cell[], edit: (tags: string[], cell: Cell) => string[]): void {
  const model = notebook.model;
  if (!model) {
    return;
  }
  model.sharedModel.transact(() => {
    for (const cell of cells) {
      const before = tagsOf(cell);
      const after = edit(before, cell);
      if (JSON.stringify(before) === JSON.stringify(after)) {
        continue;
      }
      if (after.length) {
        cell.model.setMetadata('tags', after);
      } else {
        cell.model.deleteMetadata('tags');
      }
    }
  });
}

/** Make `cellId` the active cell and scroll it into view. */
export function jumpToCell(notebook: Notebook, cellId: string | null, number: number | null): void {
  let index = cellId ? notebook.widgets.findIndex(c => c.model.id === cellId) : -1;
  if (index < 0 && number !== null) {
    index = number - 1;
  }
  if (index < 0 || index >= notebook.widgets.length) {
    return;
  }
  notebook.deselectAll();
  notebook.activeCellIndex = index;
  void notebook.scrollToItem(index);
}
