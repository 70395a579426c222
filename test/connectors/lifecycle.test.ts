import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Component, Consumer, ConnectorFactory, ExporterFactory } from '../../src/component/component';
import { serviceGraphConnectorFactory } from '../../src/connectors/servicegraph/servicegraph-connector';
import { spanMetricsConnectorFactory } from '../../src/connectors/spanmetrics/spanmetrics-connector';
import { prometheusExporterFactory } from '../../src/exporters/prometheus/prometheus-exporter';
import { prometheusRemoteWriteExporterFactory } from '../../src/exporters/prometheusremotewrite/prometheusremotewrite-exporter';
import { findFactory } from '../../src/components';
import type { Signal } from '../../src/pdata/batch';
import { Capture, parseWith, testSettings } from '../helpers/components';

// The shared lifecycle contract for the trace-derived metrics components: shutdown is safe without
// start and twice; start then shutdown releases everything (timers, ports), so the process can exit.

const host = { reportStatus: () => undefined } as never;

function connector(factory: ConnectorFactory<unknown>, raw: unknown): Component & Consumer {
  const config = parseWith((n) => factory.parseConfig(n), raw);
  return factory.create(testSettings(factory.type), config, 'traces', new Map<Signal, Consumer>([['metrics', new Capture()]]));
}

function exporter(factory: ExporterFactory<unknown>, raw: unknown): Component & Consumer {
  return factory.create(testSettings(factory.type), parseWith((n) => factory.parseConfig(n), raw));
}

const cases: Array<[string, () => Component & Consumer]> = [
  ['spanmetrics', () => connector(spanMetricsConnectorFactory, {})],
  ['servicegraph', () => connector(serviceGraphConnectorFactory, {})],
  ['prometheus', () => exporter(prometheusExporterFactory, { endpoint: '127.0.0.1:0' })],
  ['prometheusremotewrite', () => exporter(prometheusRemoteWriteExporterFactory, { endpoint: 'http://127.0.0.1:1/api/v1/write' })],
];

describe('lifecycle of the Prometheus-side components', () => {
  for (const [name, make] of cases) {
    test(`${name}: shutdown without start, start + shutdown, shutdown twice`, async () => {
      await make().shutdown();
      const component = make();
      await component.start(host);
      await component.shutdown();
      await component.shutdown();
    });
  }

  test('registered in the component registry', () => {
    assert.equal(findFactory('connector', 'spanmetrics'), spanMetricsConnectorFactory);
    assert.equal(findFactory('connector', 'servicegraph'), serviceGraphConnectorFactory);
    assert.equal(findFactory('exporter', 'prometheus'), prometheusExporterFactory);
    assert.equal(findFactory('exporter', 'prometheusremotewrite'), prometheusRemoteWriteExporterFactory);
  });

  test('a connector without a metrics pipeline to feed is refused', () => {
    const config = parseWith((n) => spanMetricsConnectorFactory.parseConfig(n), {});
    assert.throws(() => spanMetricsConnectorFactory.create(testSettings('spanmetrics'), config, 'traces', new Map()), /no metrics pipeline/);
  });
});
