import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { OnePerTurn } from '../../../src/receivers/otlp/turns';

// The receivers hand one request per event-loop turn to the pipeline (turns.ts): the first at
// once, the others in later turns, in arrival order.

/** A deferral the test steps by hand: each step is one "check phase". */
function manualTurns(): { defer: (fn: () => void) => void; step: () => void; armed: () => number } {
  const queue: (() => void)[] = [];
  return {
    defer: (fn) => queue.push(fn),
    step: () => {
      const due = queue.splice(0);
      for (const fn of due) fn();
    },
    armed: () => queue.length,
  };
}

void describe('OnePerTurn', () => {
  void test('runs the first job of a turn at once and each later one in a turn of its own, in order', () => {
    const turns = manualTurns();
    const scheduler = new OnePerTurn(turns.defer);
    const ran: string[] = [];
    scheduler.run(() => ran.push('a'));
    scheduler.run(() => ran.push('b'));
    scheduler.run(() => ran.push('c'));
    assert.deepEqual(ran, ['a']);
    assert.equal(scheduler.pending, 2);
    turns.step();
    assert.deepEqual(ran, ['a', 'b']);
    // A job arriving in b's turn waits behind c.
    scheduler.run(() => ran.push('d'));
    turns.step();
    assert.deepEqual(ran, ['a', 'b', 'c']);
    turns.step();
    assert.deepEqual(ran, ['a', 'b', 'c', 'd']);
    turns.step();
    assert.equal(scheduler.pending, 0);
    assert.equal(turns.armed(), 0, 'nothing stays armed once the queue is empty');
    // A new turn with nothing waiting: the next job runs at once again.
    scheduler.run(() => ran.push('e'));
    assert.deepEqual(ran, ['a', 'b', 'c', 'd', 'e']);
  });

  void test('a job that throws does not strand the ones behind it', () => {
    const turns = manualTurns();
    const scheduler = new OnePerTurn(turns.defer);
    const ran: string[] = [];
    scheduler.run(() => ran.push('a'));
    scheduler.run(() => {
      throw new Error('boom');
    });
    scheduler.run(() => ran.push('c'));
    assert.throws(() => turns.step(), /boom/);
    turns.step();
    assert.deepEqual(ran, ['a', 'c']);
  });

  void test('with setImmediate, jobs queued in one turn run in successive turns', async () => {
    const scheduler = new OnePerTurn();
    const turnOf: number[] = [];
    let turn = 0;
    // Counts turns: an immediate armed before each job's check phase.
    const tick = () => {
      turn++;
      if (turnOf.length < 4) setImmediate(tick);
    };
    setImmediate(tick);
    await new Promise<void>((resolve) => {
      for (let i = 0; i < 4; i++) scheduler.run(() => {
        turnOf.push(turn);
        if (turnOf.length === 4) resolve();
      });
    });
    assert.deepEqual(turnOf, [0, 1, 2, 3]);
  });
});
