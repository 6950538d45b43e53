/**
 * The tag model, in the browser: the same `metadata.tags` the converter reads (docs/tags.md), Kale's aliases
 * included. Pure functions over tag lists, so they are unit-tested without JupyterLab.
 */

export const STAGE_PREFIXES = ['stage:', 'step:', 'block:'];
export const AFTER_PREFIXES = ['after:', 'prev:'];
export const PARAMETER_TAGS = ['parameters', 'pipeline-parameters'];
export const SHARED_TAGS = ['shared', 'imports', 'functions'];
export const SKIP_TAG = 'skip';
export const PRELUDE = 'prelude';
const RESERVED = ['shared', 'pipeline', 'stages', 'main', 'nb2pipe', 'runtime'];

/** The role flags a cell can have besides a stage. */
export type Role = 'parameters' | 'shared' | 'skip';

/** A code cell as the tag model sees it. */
export interface ICellTags {
  id: string;
  type: string;
  tags: string[];
}

/** One stage: its name and its code cells, in notebook order. */
export interface IStage {
  name: string;
  cells: string[];
  after: string[];
}

function stripPrefix(tag: string, prefixes: string[]): string | null {
  for (const p of prefixes) {
    if (tag.startsWith(p)) {
      return tag.slice(p.length).trim();
    }
  }
  return null;
}

/** The stage a cell's tags start (nb2pipe or Kale spelling), or null. */
export function stageTag(tags: string[]): string | null {
  for (const t of tags) {
    const name = stripPrefix(t, STAGE_PREFIXES);
    if (name !== null) {
      return name;
    }
  }
  return null;
}

/** The `after:`/`prev:` targets in the tags. */
export function afterTags(tags: string[]): string[] {
  return tags.map(t => stripPrefix(t, AFTER_PREFIXES)).filter((n): n is string => n !== null);
}

/** Which role flag the tags carry, if any (Kale spellings count). */
export function roleOf(tags: string[]): Role | null {
  if (tags.some(t => PARAMETER_TAGS.includes(t))) {
    return 'parameters';
  }
  if (tags.includes(SKIP_TAG)) {
    return 'skip';
  }
  if (tags.some(t => SHARED_TAGS.includes(t)) && stageTag(tags) === null) {
    return 'shared';
  }
  return null;
}

/** Why `name` cannot be a stage name, or null when it can. */
export function stageNameProblem(name: string): string | null {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    return 'a stage name is a Python identifier (letters, digits, _)';
  }
  if (name.startsWith('__')) {
    return 'a stage name may not start with __';
  }
  if (RESERVED.includes(name)) {
    return `"${name}" is reserved by nb2pipe`;
  }
  return null;
}

/** Tags with the cell's stage tag replaced by `stage:NAME` (or removed when name is null). */
export function withStage(tags: string[], name: string | null): string[] {
  const rest = tags.filter(
    t => stripPrefix(t, STAGE_PREFIXES) === null && !PARAMETER_TAGS.includes(t) && t !== SKIP_TAG
  );
  return name === null ? rest : [`stage:${name}`, ...rest];
}

/** Tags with a role set (it replaces any stage tag and other role) or cleared. */
export function withRole(tags: string[], role: Role | null): string[] {
  const rest = tags.filter(
    t =>
      stripPrefix(t, STAGE_PREFIXES) === null &&
      !PARAMETER_TAGS.includes(t) &&
      !SHARED_TAGS.includes(t) &&
      t !== SKIP_TAG
  );
  return role === null ? rest : [role, ...rest];
}

/** Tags with every stage and after reference to `from` renamed to `to` (Kale spellings become nb2pipe's). */
export function renamed(tags: string[], from: string, to: string): string[] {
  return tags.map(t => {
    if (stripPrefix(t, STAGE_PREFIXES) === from) {
      return `stage:${to}`;
    }
    if (stripPrefix(t, AFTER_PREFIXES) === from) {
      return `after:${to}`;
    }
    return t;
  });
}

/** Tags without the stage `name`: its start tag and `after:` references go. */
export function withoutStage(tags: string[], name: string): string[] {
  return tags.filter(t => stripPrefix(t, STAGE_PREFIXES) !== name && stripPrefix(t, AFTER_PREFIXES) !== name);
}

/** Tags with an `after:TARGET` constraint added once. */
export function withAfter(tags: string[], target: string): string[] {
  return afterTags(tags).includes(target) ? tags : [...tags, `after:${target}`];
}

/**
 * The stages in notebook order, as the converter groups them: a stage tag starts a stage, untagged code cells
 * below belong to it; cells above the first stage form the prelude; parameters, shared and skip cells belong to
 * no stage.
 */
export function stagesOf(cells: ICellTags[]): IStage[] {
  const stages: IStage[] = [];
  let current: IStage | null = null;
  for (const cell of cells) {
    if (cell.type !== 'code' || roleOf(cell.tags) !== null) {
      continue;
    }
    const name = stageTag(cell.tags);
    if (name !== null && (current === null || name !== current.name)) {
      current = stages.find(s => s.name === name) ?? { name, cells: [], after: [] };
      if (!stages.includes(current)) {
        stages.push(current);
      }
    }
    if (current === null) {
      current = { name: PRELUDE, cells: [], after: [] };
      stages.push(current);
    }
    current.cells.push(cell.id);
    for (const a of afterTags(cell.tags)) {
      if (!current.after.includes(a)) {
        current.after.push(a);
      }
    }
  }
  return stages;
}

/** The stage each code cell belongs to (cell id -> stage name), following {@link stagesOf}. */
export function stageByCell(cells: ICellTags[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const s of stagesOf(cells)) {
    for (const id of s.cells) {
      map.set(id, s.name);
    }
  }
  return map;
}

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];

/** A colour for a stage, from its name: it stays the same while other stages are added, renamed or removed. */
export function stageColor(name: string): string {
  let hash = 0;
  for (let i = 0; i < name.length; i++) {
    hash = (hash * 31 + name.charCodeAt(i)) >>> 0;
  }
  return PALETTE[hash % PALETTE.length];
}
