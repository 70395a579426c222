import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AttemptSignal } from '../../../src/exporters/exporterhelper/attempt-signal';

describe('AttemptSignal: what pushes use of an AbortSignal', () => {
  test('abort sets aborted and reason, and calls each listener once, in the order added', () => {
    const s = new AttemptSignal(Infinity);
    const calls: string[] = [];
    s.addEventListener('abort', () => calls.push('a'));
    s.addEventListener('abort', () => calls.push('b'), { once: true });
    s.addEventListener('abort', () => calls.push('c'));
    assert.equal(s.aborted, false);
    const reason = new Error('why');
    s.abort(reason);
    s.abort(new Error('again'));
    assert.equal(s.aborted, true);
    assert.equal(s.reason, reason, 'the first reason stays');
    assert.deepEqual(calls, ['a', 'b', 'c']);
  });

  test('a removed listener is not called; the same listener added twice is called once; one added after the abort never', () => {
    const s = new AttemptSignal(Infinity);
    let first = 0;
    let second = 0;
    let late = 0;
    const f = () => first++;
    const g = () => second++;
    s.addEventListener('abort', f);
    s.addEventListener('abort', g);
    s.addEventListener('abort', g);
    s.removeEventListener('abort', f);
    s.abort(new Error('x'));
    s.addEventListener('abort', () => late++);
    assert.deepEqual([first, second, late], [0, 1, 0]);
  });

  test('removing the first listener keeps the later ones', () => {
    const s = new AttemptSignal(Infinity);
    const calls: number[] = [];
    const one = () => calls.push(1);
    s.addEventListener('abort', one);
    s.addEventListener('abort', () => calls.push(2));
    s.addEventListener('abort', () => calls.push(3));
    s.removeEventListener('abort', one);
    s.abort('r');
    assert.deepEqual(calls, [2, 3]);
  });

  test('toAbortSignal follows the attempt: made before the abort it aborts with it, made after it is aborted already', () => {
    const before = new AttemptSignal(Infinity);
    const signal = before.toAbortSignal();
    assert.equal(before.toAbortSignal(), signal, 'one AbortSignal per attempt');
    assert.equal(signal.aborted, false);
    before.abort('timed out');
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason, 'timed out');

    const after = new AttemptSignal(Infinity);
    after.abort('late');
    assert.equal(after.toAbortSignal().aborted, true);
    assert.equal(after.toAbortSignal().reason, 'late');
  });
});
