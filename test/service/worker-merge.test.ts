import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InstanceView, SamplingView } from '../../src/component/component';
import { mergeDryRuns, mergeInstances, mergeSampling } from '../../src/service/worker-merge';

// The primary's one view over its workers' inventories and sampling counts (service::workers).

const view = (id: string, worker: Partial<InstanceView>): InstanceView => ({
  id,
  service: 'web',
  host: 'h',
  pid: 1,
  kept: true,
  selector: null,
  firstSeen: '2026-01-01T00:00:10.000Z',
  lastSeen: '2026-01-01T00:00:20.000Z',
  spansPerSecond: 1,
  metricPointsPerSecond: 0,
  attributes: {},
  omittedAttributes: 0,
  ...worker,
});

void test('instances: one row per id; rates summed, first and last seen over all workers, the rest from the latest', () => {
  const merged = mergeInstances([
    [view('b', {}), view('a', { spansPerSecond: 2, lastSeen: '2026-01-01T00:00:30.000Z', kept: false, selector: 'drop x' })],
    [view('a', { spansPerSecond: 3, firstSeen: '2026-01-01T00:00:05.000Z', kept: true })],
  ]);
  assert.deepEqual(
    merged.map((i) => [i.id, i.spansPerSecond, i.firstSeen, i.lastSeen, i.kept, i.selector]),
    [
      ['a', 5, '2026-01-01T00:00:05.000Z', '2026-01-01T00:00:30.000Z', false, 'drop x'],
      ['b', 1, '2026-01-01T00:00:10.000Z', '2026-01-01T00:00:20.000Z', true, null],
    ],
  );
});

void test('sampling: counts summed per service, sampler and policy; the newest dropped traces of all workers', () => {
  const worker = (seen: number, at: string): SamplingView => ({
    services: [{ service: 'web', seen, keptByFilter: null, keptBySampling: seen / 2, samplers: [{ processor: 'probabilistic_sampler', seen, kept: seen / 2 }] }],
    policies: [{ processor: 'probabilistic_sampler', policy: null, sampled: 1, notSampled: 2 }],
    recentDropped: [{ traceId: at, service: 'web', processor: 'probabilistic_sampler', policy: null, reason: 'r', at }],
    maxRecentDropped: 1,
  });
  const merged = mergeSampling([worker(10, '2026-01-01T00:00:01.000Z'), worker(20, '2026-01-01T00:00:02.000Z')]);
  assert.deepEqual(merged.services, [{ service: 'web', seen: 30, keptByFilter: null, keptBySampling: 15, samplers: [{ processor: 'probabilistic_sampler', seen: 30, kept: 15 }] }]);
  assert.deepEqual(merged.policies, [{ processor: 'probabilistic_sampler', policy: null, sampled: 2, notSampled: 4 }]);
  assert.deepEqual(merged.recentDropped.map((d) => d.at), ['2026-01-01T00:00:02.000Z']);
});

void test('dry runs: the errors if any; else instances by id, a decision over null', () => {
  assert.deepEqual(mergeDryRuns([{ errors: [], instances: [] }, { errors: ['bad'], instances: [] }]), { errors: ['bad'], instances: [] });
  assert.deepEqual(
    mergeDryRuns([
      { errors: [], instances: [{ id: 'b', kept: null, selector: null }] },
      { errors: [], instances: [{ id: 'b', kept: true, selector: 'x' }, { id: 'a', kept: false, selector: null }] },
    ]).instances,
    [
      { id: 'a', kept: false, selector: null },
      { id: 'b', kept: true, selector: 'x' },
    ],
  );
});
