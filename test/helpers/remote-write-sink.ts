import * as http from 'node:http';
import * as protobuf from 'protobufjs';
import { uncompress } from 'snappyjs';

// A remote-write 1.0 receiver on a loopback port that decodes what it gets (the wire format
// written from the protocol's field numbers) and can play a backend that is down (503).

const root = protobuf.parse(`
syntax = "proto3";
package prometheus;
message WriteRequest { repeated TimeSeries timeseries = 1; }
message TimeSeries { repeated Label labels = 1; repeated Sample samples = 2; }
message Label { string name = 1; string value = 2; }
message Sample { double value = 1; int64 timestamp = 2; }
`).root;
export const WriteRequest = root.lookupType('prometheus.WriteRequest');

export interface DecodedSeries {
  labels: Array<{ name: string; value: string }>;
  samples: Array<{ value: number; timestamp: number }>;
}

export class RemoteWriteSink {
  /** Accepted requests, decoded. */
  readonly accepted: DecodedSeries[][] = [];
  /** Requests answered 503 while down. */
  refused = 0;
  down = false;
  private server: http.Server | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.down) {
          this.refused++;
          res.writeHead(503, { 'content-type': 'text/plain' }).end('down');
          return;
        }
        const body = uncompress(Buffer.concat(chunks));
        const decoded = WriteRequest.toObject(WriteRequest.decode(body), { longs: Number, defaults: true }) as { timeseries: DecodedSeries[] };
        this.accepted.push(decoded.timeseries);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/api/v1/write`;
  }

  /** Values of metric `name` by the value of `label`, over every accepted sample. */
  valuesBy(name: string, label: string): Map<string, number[]> {
    const out = new Map<string, number[]>();
    for (const request of this.accepted) {
      for (const series of request) {
        if (series.labels.find((l) => l.name === '__name__')?.value !== name) continue;
        const key = series.labels.find((l) => l.name === label)?.value ?? '';
        out.set(key, [...(out.get(key) ?? []), ...series.samples.map((s) => s.value)]);
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
