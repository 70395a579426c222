import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { parseRecord, readElu } from '../../bench/elu-probe';

void describe('bench: event-loop utilisation probe', () => {
  void test('a torn or malformed record is refused, a whole one read', () => {
    const one = `${'12.500'.padStart(16)} ${'3.250'.padStart(16)}`;
    assert.deepEqual(parseRecord(`${one}|${one}\n`), { idle: 12.5, active: 3.25 });
    // A read that caught a write half done: the two copies differ.
    const newer = `${'13.000'.padStart(16)} ${'3.750'.padStart(16)}`;
    assert.equal(parseRecord(`${newer.slice(0, 20)}${one.slice(20)}|${one}\n`), undefined);
    assert.equal(parseRecord(`${one}|${one}`), undefined);
    assert.equal(parseRecord(''), undefined);
    assert.equal(parseRecord('x|x\n'), undefined);
  });

  void test('a preloaded process publishes its idle and active time', async () => {
    const probe = path.join(__dirname, '../../bench/elu-probe.js');
    // Busy for a while inside the event loop (the main script's own run is not counted), then
    // idle, so both counters move; stdin keeps it alive until closed.
    const script = 'setTimeout(() => { const t = Date.now(); while (Date.now() - t < 150); }, 10); process.stdin.resume(); process.stdin.on("end", () => process.exit(0));';
    const child = spawn(process.execPath, ['--require', probe, '-e', script], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    try {
      let seen: { idle: number; active: number } | undefined;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        seen = readElu(child.pid!);
        if (seen && seen.active > 100 && seen.idle > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(seen && seen.active > 100 && seen.idle > 0, JSON.stringify(seen));
    } finally {
      child.stdin.end();
      await new Promise((resolve) => child.once('exit', resolve));
    }
    assert.equal(readElu(child.pid!), undefined, 'the file is removed at exit');
  });
});
