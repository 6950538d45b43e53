/**
 * The tag model (labextension/src/tagmodel.ts), run by Jest: what the sidebar reads from `metadata.tags` and what
 * each sidebar action writes back, in nb2pipe's and Kale's spellings.
 */
import {
  ICellTags,
  afterTags,
  renamed,
  roleOf,
  stageByCell,
  stageColor,
  stageNameProblem,
  stagesOf,
  stageTag,
  withAfter,
  withoutStage,
  withRole,
  withStage
} from '../tagmodel';

const code = (id: string, tags: string[] = []): ICellTags => ({ id, type: 'code', tags });

/** Apply a tag edit to every cell, as the sidebar does through the notebook model. */
const edit = (cells: ICellTags[], change: (tags: string[]) => string[]): ICellTags[] =>
  cells.map(c => ({ ...c, tags: change(c.tags) }));

describe('parsing tags', () => {
  it.each([
    [['stage:load'], 'load'],
    [['step:train'], 'train'],
    [['block:old'], 'old'],
    [['stage: spaced '], 'spaced'],
    [['metrics', 'step:eval'], 'eval'],
    [['shared'], null],
    [[], null]
  ])('stageTag(%j) is %j', (tags, expected) => {
    expect(stageTag(tags)).toBe(expected);
  });

  it('reads after: and Kale prev: constraints', () => {
    expect(afterTags(['stage:c', 'after:a', 'prev:b', 'metrics'])).toEqual(['a', 'b']);
    expect(afterTags(['stage:c'])).toEqual([]);
  });

  it.each([
    [['parameters'], 'parameters'],
    [['pipeline-parameters'], 'parameters'],
    [['shared'], 'shared'],
    [['imports'], 'shared'],
    [['functions'], 'shared'],
    [['skip', 'stage:x'], 'skip'],
    [['imports', 'step:x'], null],
    [['metrics'], null]
  ])('roleOf(%j) is %j', (tags, expected) => {
    expect(roleOf(tags)).toBe(expected);
  });
});

describe('grouping cells into stages', () => {
  const cells = [
    code('a'),
    code('p', ['parameters']),
    code('b', ['stage:load']),
    code('c'),
    { id: 'm', type: 'markdown', tags: ['stage:ignored'] },
    code('d', ['step:train', 'prev:load']),
    code('s', ['skip']),
    code('e')
  ];

  it('untagged cells join the stage above; cells above the first stage form the prelude', () => {
    expect(stagesOf(cells)).toEqual([
      { name: 'prelude', cells: ['a'], after: [] },
      { name: 'load', cells: ['b', 'c'], after: [] },
      { name: 'train', cells: ['d', 'e'], after: ['load'] }
    ]);
  });

  it('maps each code cell to its stage; role cells and markdown belong to none', () => {
    const byCell = stageByCell(cells);
    expect(byCell.get('e')).toBe('train');
    expect(byCell.get('c')).toBe('load');
    expect(byCell.has('s')).toBe(false);
    expect(byCell.has('p')).toBe(false);
    expect(byCell.has('m')).toBe(false);
  });

  it('a stage tag repeated further down continues the same stage', () => {
    const stages = stagesOf([code('a', ['stage:x']), code('b', ['stage:y']), code('c', ['stage:x'])]);
    expect(stages.map(s => [s.name, s.cells])).toEqual([
      ['x', ['a', 'c']],
      ['y', ['b']]
    ]);
  });
});

describe('assigning a stage', () => {
  it('replaces the old stage tag (Kale spelling too) and any role, keeps the other tags', () => {
    expect(withStage(['step:old', 'metrics', 'skip'], 'new')).toEqual(['stage:new', 'metrics']);
    expect(withStage(['pipeline-parameters'], 'x')).toEqual(['stage:x']);
    expect(withStage(['block:old', 'reads:data.csv'], 'x')).toEqual(['stage:x', 'reads:data.csv']);
  });

  it('null removes the stage tag but keeps after: constraints', () => {
    expect(withStage(['stage:old', 'after:x'], null)).toEqual(['after:x']);
  });

  it('assigning two selected cells: the first starts the stage, the second joins it', () => {
    const before = [code('a', ['stage:load']), code('b', ['stage:other']), code('c')];
    const after = before.map((c, i) => (i === 1 ? { ...c, tags: withStage(c.tags, 'train') } : c));
    expect(stagesOf(after).map(s => [s.name, s.cells])).toEqual([
      ['load', ['a']],
      ['train', ['b', 'c']]
    ]);
  });
});

describe('roles', () => {
  it('replace stage tags and each other', () => {
    expect(withRole(['stage:a', 'metrics'], 'parameters')).toEqual(['parameters', 'metrics']);
    expect(withRole(['imports'], 'skip')).toEqual(['skip']);
    expect(withRole(['functions', 'step:a'], 'shared')).toEqual(['shared']);
  });

  it('null clears the role only', () => {
    expect(withRole(['skip', 'reads:x.csv'], null)).toEqual(['reads:x.csv']);
  });
});

describe('renaming and removing a stage', () => {
  it('rename follows after: and prev: references and writes nb2pipe spelling', () => {
    expect(renamed(['step:a', 'prev:a', 'after:b'], 'a', 'z')).toEqual(['stage:z', 'after:z', 'after:b']);
    expect(renamed(['stage:ab'], 'a', 'z')).toEqual(['stage:ab']);
  });

  it('renaming across a notebook keeps the grouping', () => {
    const cells = [code('a', ['block:load']), code('b'), code('c', ['stage:train', 'prev:load'])];
    const result = edit(cells, tags => renamed(tags, 'load', 'fetch'));
    expect(stagesOf(result)).toEqual([
      { name: 'fetch', cells: ['a', 'b'], after: [] },
      { name: 'train', cells: ['c'], after: ['fetch'] }
    ]);
  });

  it('remove drops the stage tag and constraints on it; its cells join the stage above', () => {
    expect(withoutStage(['stage:a', 'after:a', 'metrics'], 'a')).toEqual(['metrics']);
    const cells = [code('a', ['stage:load']), code('b', ['stage:clean']), code('c', ['stage:train', 'after:clean'])];
    const result = edit(cells, tags => withoutStage(tags, 'clean'));
    expect(stagesOf(result)).toEqual([
      { name: 'load', cells: ['a', 'b'], after: [] },
      { name: 'train', cells: ['c'], after: [] }
    ]);
  });
});

describe('after: constraints', () => {
  it('are added once, whatever the spelling already there', () => {
    expect(withAfter(['stage:b'], 'a')).toEqual(['stage:b', 'after:a']);
    expect(withAfter(['stage:b', 'after:a'], 'a')).toEqual(['stage:b', 'after:a']);
    expect(withAfter(['stage:b', 'prev:a'], 'a')).toEqual(['stage:b', 'prev:a']);
  });

  it('collect on the stage from any of its cells', () => {
    const cells = [code('a', ['stage:x']), code('b', ['stage:y']), code('c', ['after:x'])];
    expect(stagesOf(cells)[1]).toEqual({ name: 'y', cells: ['b', 'c'], after: ['x'] });
  });
});

describe('stage names and colours', () => {
  it.each(['train_1', '_private', 'Load'])('%s is a valid stage name', name => {
    expect(stageNameProblem(name)).toBeNull();
  });

  it.each(['1train', 'has space', 'a-b', 'shared', 'pipeline', '__x', ''])('%j is refused', name => {
    expect(stageNameProblem(name)).not.toBeNull();
  });

  it('a stage keeps its colour whatever the other stages are', () => {
    expect(stageColor('train')).toBe(stageColor('train'));
    expect(stageColor('load')).toMatch(/^#[0-9a-f]{6}$/);
  });
});
