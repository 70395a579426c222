import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { storageRows, targetChecks, ratios, type Result } from '../../bench/report';
import { collectorConfig, spansieveConfig } from '../../bench/systems';
import { buildServiceConfig } from '../../src/config/service-config';

// The benchmark's persistent-queue systems: the generated configs and the comparison rows.

const KEEP = ['host-a:1', 'host-b:2'];

describe('bench: persistent sending queue systems', () => {
  test('spansieve-storage: the generated config puts the otlp exporter\'s queue in file_storage and spansieve accepts it', () => {
    const doc = spansieveConfig(4317, 4318, 4319, KEEP, true, '/tmp/q');
    const service = buildServiceConfig(doc);
    assert.deepEqual(service.serviceExtensions, ['file_storage']);
    assert.deepEqual((doc.exporters as Record<string, Record<string, unknown>>)['otlp/sink']!.sending_queue, { storage: 'file_storage' });
    // In memory: no extension, the default queue.
    const memory = spansieveConfig(4317, 4318, 4319, KEEP, true);
    assert.deepEqual(buildServiceConfig(memory).serviceExtensions, []);
    assert.equal((memory.exporters as Record<string, Record<string, unknown>>)['otlp/sink']!.sending_queue, undefined);
  });

  test('collector-storage: file_storage with the Collector\'s defaults (no fsync key) and the exporter\'s queue on it', () => {
    const doc = collectorConfig(4317, 4318, 4319, KEEP, true, '/tmp/q') as {
      extensions: Record<string, Record<string, unknown>>;
      exporters: Record<string, Record<string, unknown>>;
      service: { extensions: string[] };
    };
    assert.deepEqual(doc.extensions.file_storage, { directory: '/tmp/q', create_directory: true });
    assert.deepEqual(doc.exporters['otlp/sink']!.sending_queue, { storage: 'file_storage' });
    assert.deepEqual(doc.service.extensions, ['file_storage']);
  });

  // Only where the reference Collector was built (bash scripts/install-peers.sh otelcol): the
  // tests never build it.
  const otelcol = process.env.SPANSIEVE_OTELCOL_BIN;
  test('collector-storage: the reference Collector validates the generated config', { skip: otelcol === undefined ? 'SPANSIEVE_OTELCOL_BIN not set' : false }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-otelcol-'));
    try {
      const file = path.join(dir, 'c.yaml');
      fs.writeFileSync(file, stringify(collectorConfig(4317, 4318, 4319, KEEP, true, path.join(dir, 'q')), { lineWidth: 0 }));
      execFileSync(otelcol!, ['validate', '--config', file], { stdio: 'pipe' });
      // And it can fail: an unknown key in file_storage is refused.
      const bad = collectorConfig(4317, 4318, 4319, KEEP, true, path.join(dir, 'q')) as { extensions: Record<string, Record<string, unknown>> };
      bad.extensions.file_storage!.no_such_key = true;
      fs.writeFileSync(file, stringify(bad, { lineWidth: 0 }));
      assert.throws(() => execFileSync(otelcol!, ['validate', '--config', file], { stdio: 'pipe' }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('storage rows: ratios per transport, and the file_storage targets', () => {
    const result = (system: Result['system'], cpu: number, p99: number, rss: number): Result =>
      ({ shape: 'default', system, transport: 'grpc', cpu_seconds_per_million_spans: cpu, p99_ms: p99, peak_rss_mb: rss, other_load_server_core: 0.1 }) as unknown as Result;
    const results = [result('spansieve', 4, 2, 80), result('spansieve-storage', 7, 12, 90), result('collector-storage', 14, 30, 120)];
    const [row] = storageRows(results, ['grpc', 'http-protobuf']);
    assert.equal(storageRows(results, ['grpc', 'http-protobuf']).length, 1); // no storage results on http
    assert.deepEqual(row!.cpu_seconds_per_million_spans, { spansieve: 4, spansieve_storage: 7, collector_storage: 14, collector_ref: null });
    assert.equal(row!.collector_storage_cpu_vs_memory, null);
    const [withRef] = storageRows([...results, result('collector-ref', 10, 8, 60)], ['grpc']);
    assert.equal(withRef!.collector_storage_cpu_vs_memory, 1.4);
    assert.equal(row!.storage_cpu_vs_memory, 1.75);
    assert.equal(row!.storage_cpu_vs_collector_storage, 0.5);
    assert.equal(row!.storage_p99_vs_collector_storage, 0.4);
    const checks = targetChecks(results, ratios(results, ['grpc']));
    const cpu = checks.find((c) => c.target === 'file_storage: CPU per span vs in-memory');
    const p99 = checks.find((c) => c.target === 'file_storage: p99 at the fixed rate (ms)');
    assert.deepEqual([cpu?.value, cpu?.met, p99?.value, p99?.met], [1.75, false, 12, false]);
  });
});
