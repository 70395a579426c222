import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cpuList } from '../../bench/proc';
import { coresRows, type Result } from '../../bench/report';
import { parseCores, parseOptions, placement } from '../../bench/run';

void describe('bench: --cores (N cores, N senders)', () => {
  void test('parses a list of distinct positive core counts; one core by default', () => {
    assert.deepEqual(parseOptions([]).cores, [1]);
    assert.deepEqual(parseOptions(['--cores', '1,2']).cores, [1, 2]);
    assert.deepEqual(parseOptions(['--cores', '2']).cores, [2]);
    assert.deepEqual(parseCores('4,1'), [4, 1]);
    for (const bad of ['0', '-1', '1.5', 'two', '', '1,', ' ', '1e1', '0x2']) {
      assert.throws(() => parseCores(bad), /--cores: .* is not a positive whole number of cores/, bad);
    }
    assert.throws(() => parseCores('1,2,1'), /names a core count twice/);
    assert.throws(() => parseOptions(['--cores']), /--cores needs a value/);
  });

  void test('the server gets cores 0..N-1, the load generator the rest, or shares them all', () => {
    assert.deepEqual(placement(1, 2), { cores: 1, server: [0], loadgen: [1], shared: false });
    assert.deepEqual(placement(2, 2), { cores: 2, server: [0, 1], loadgen: [0, 1], shared: true });
    assert.deepEqual(placement(2, 4), { cores: 2, server: [0, 1], loadgen: [2, 3], shared: false });
    assert.deepEqual(placement(1, 1), { cores: 1, server: [0], loadgen: [0], shared: true });
    assert.throws(() => placement(3, 2), /--cores 3: this machine has 2 CPUs/);
  });

  void test('CPU lists are written as the kernel and taskset write them', () => {
    assert.equal(cpuList([0]), '0');
    assert.equal(cpuList([1, 0]), '0-1');
    assert.equal(cpuList([0, 2, 3]), '0,2-3');
    assert.equal(cpuList([3, 1, 2, 5]), '1-3,5');
  });

  void test('each N-core row is compared with the Collector on the same N cores and with itself on one', () => {
    const row = (system: string, cores: number, max: number, perCpu: number) =>
      ({
        shape: 'default', transport: 'grpc', system, cores, connections: cores, max_concurrency: 16 * cores,
        max_spans_per_second_one_core: max, max_spans_per_cpu_second: perCpu, max_server_cpu_cores: cores,
        max_loadgen_cpu_cores: 0.4, loadgen_shares_server_cores: cores === 2, max_other_load_server_core: 0,
      }) as unknown as Result;
    const rows = coresRows([
      row('collector', 1, 100, 110),
      row('collector', 2, 150, 90),
      row('spansieve', 1, 220, 250),
      row('spansieve-workers', 2, 300, 180),
    ]);
    const pick = (system: string, cores: number) => rows.find((r) => r.system === system && r.cores === cores)!;
    assert.equal(pick('spansieve', 1).max_vs_collector, 2.2);
    assert.equal(pick('spansieve', 1).max_per_cpu_second_vs_collector, 2.273);
    assert.equal(pick('spansieve-workers', 2).max_vs_collector, 2);
    assert.equal(pick('spansieve-workers', 2).max_per_cpu_second_vs_collector, 2);
    assert.equal(pick('collector', 2).max_vs_collector, null);
    assert.equal(pick('collector', 2).max_vs_one_core, 1.5);
    // No spansieve-workers on one core in this run: nothing to scale against.
    assert.equal(pick('spansieve-workers', 2).max_vs_one_core, null);
    assert.equal(pick('spansieve', 1).max_vs_one_core, null);
  });
});
