import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
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

const code = (id: string, tags: string[] = []) => ({ id, type: 'code', tags });

test('stage tags in nb2pipe and Kale spellings', () => {
  assert.equal(stageTag(['stage:load']), 'load');
  assert.equal(stageTag(['step:train']), 'train');
  assert.equal(stageTag(['block:old']), 'old');
  assert.equal(stageTag(['shared']), null);
});

test('roles, Kale aliases included', () => {
  assert.equal(roleOf(['pipeline-parameters']), 'parameters');
  assert.equal(roleOf(['imports']), 'shared');
  assert.equal(roleOf(['functions']), 'shared');
  assert.equal(roleOf(['skip', 'stage:x']), 'skip');
  assert.equal(roleOf(['metrics']), null);
});

test('stages group untagged cells below a stage tag, with a prelude', () => {
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
  assert.deepEqual(stagesOf(cells), [
    { name: 'prelude', cells: ['a'], after: [] },
    { name: 'load', cells: ['b', 'c'], after: [] },
    { name: 'train', cells: ['d', 'e'], after: ['load'] }
  ]);
  assert.equal(stageByCell(cells).get('e'), 'train');
  assert.equal(stageByCell(cells).get('s'), undefined);
});

test('setting a stage replaces the old stage tag and role, keeps the rest', () => {
  assert.deepEqual(withStage(['step:old', 'metrics', 'skip'], 'new'), ['stage:new', 'metrics']);
  assert.deepEqual(withStage(['stage:old', 'after:x'], null), ['after:x']);
});

test('roles replace stage tags and each other', () => {
  assert.deepEqual(withRole(['stage:a', 'metrics'], 'parameters'), ['parameters', 'metrics']);
  assert.deepEqual(withRole(['imports'], 'skip'), ['skip']);
  assert.deepEqual(withRole(['skip', 'reads:x.csv'], null), ['reads:x.csv']);
});

test('rename, remove and after constraints', () => {
  assert.deepEqual(renamed(['step:a', 'prev:a', 'after:b'], 'a', 'z'), ['stage:z', 'after:z', 'after:b']);
  assert.deepEqual(withoutStage(['stage:a', 'after:a', 'metrics'], 'a'), ['metrics']);
  assert.deepEqual(withAfter(['stage:b'], 'a'), ['stage:b', 'after:a']);
  assert.deepEqual(withAfter(['stage:b', 'prev:a'], 'a'), ['stage:b', 'prev:a']);
});

test('stage name checks mirror the converter', () => {
  assert.equal(stageNameProblem('train_1'), null);
  assert.notEqual(stageNameProblem('1train'), null);
  assert.notEqual(stageNameProblem('has space'), null);
  assert.notEqual(stageNameProblem('shared'), null);
  assert.notEqual(stageNameProblem('__x'), null);
});

test('a stage keeps its colour whatever the other stages are', () => {
  assert.equal(stageColor('train'), stageColor('train'));
  assert.match(stageColor('load'), /^#[0-9a-f]{6}$/);
});
