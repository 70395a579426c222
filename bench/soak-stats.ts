import { SHAPE_NAMES, shapeNamed, type Shape } from './shapes';
import { TRANSPORTS, type Transport } from './protocol';
import { SYSTEMS, type SystemName } from './systems';

// The pure parts of the soak (bench/soak.ts): its options, and RSS over time reduced to the numbers
// of the table (RSS at 1 min and at the end, the slope over the second half, the peak).

export interface SoakOptions {
  readonly seconds: number;
  readonly rate: number;
  readonly shape: Shape;
  readonly systems: readonly SystemName[];
  readonly transport: Transport;
  /** Seconds between samples. */
  readonly intervalS: number;
  /** Closed-loop warm-up before the fixed rate (as run.ts), seconds. */
  readonly burstS: number;
  readonly out: string | undefined;
}

export const SOAK_USAGE = `usage: npm run bench:soak -- [--seconds S (600)] [--rate SPANS_PER_S (20000)] [--shape ${SHAPE_NAMES.join('|')} (obi-sidecar)]
                           [--systems ${SYSTEMS.join(',')} (spansieve,collector)] [--transport ${TRANSPORTS.join('|')} (grpc)]
                           [--interval S (5)] [--burst S (4)] [--out FILE (bench/results/soak.json)]`;

export function parseSoakOptions(argv: readonly string[]): SoakOptions {
  let seconds = 600;
  let rate = 20_000;
  let shape = shapeNamed('obi-sidecar');
  let systems: SystemName[] = ['spansieve', 'collector'];
  let transport: Transport = 'grpc';
  let intervalS = 5;
  let burstS = 4;
  let out: string | undefined;
  const args = [...argv];
  while (args.length > 0) {
    const arg = args.shift()!;
    const value = () => {
      const v = args.shift();
      if (v === undefined) throw new Error(`${arg} needs a value\n${SOAK_USAGE}`);
      return v;
    };
    const positive = (what: string) => {
      const n = Number(value());
      if (!(n > 0) || !Number.isFinite(n)) throw new Error(`${arg} must be a positive number of ${what}`);
      return n;
    };
    switch (arg) {
      case '--seconds':
        seconds = positive('seconds');
        break;
      case '--rate':
        rate = positive('spans per second');
        break;
      case '--shape':
        shape = shapeNamed(value());
        break;
      case '--systems':
        systems = value().split(',').map((item) => {
          if (!SYSTEMS.includes(item as SystemName)) throw new Error(`--systems: unknown ${JSON.stringify(item)}; one of ${SYSTEMS.join(', ')}`);
          return item as SystemName;
        });
        break;
      case '--transport': {
        const t = value();
        if (!TRANSPORTS.includes(t as Transport)) throw new Error(`--transport: unknown ${JSON.stringify(t)}; one of ${TRANSPORTS.join(', ')}`);
        transport = t as Transport;
        break;
      }
      case '--interval':
        intervalS = positive('seconds');
        break;
      case '--burst': {
        burstS = Number(value());
        if (!(burstS >= 0)) throw new Error('--burst must be a number of seconds');
        break;
      }
      case '--out':
        out = value();
        break;
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}\n${SOAK_USAGE}`);
    }
  }
  if (intervalS * 4 > seconds) throw new Error(`--interval ${intervalS} leaves fewer than 4 samples in ${seconds} s`);
  return { seconds, rate, shape, systems, transport, intervalS, burstS, out };
}

/** One reading: seconds since the fixed rate started, and a value (MiB). */
export interface Point {
  readonly t: number;
  readonly v: number;
}

/** Least-squares slope of v over t, per minute (t in seconds); NaN with fewer than 2 distinct times. */
export function slopePerMinute(points: readonly Point[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const meanT = points.reduce((s, p) => s + p.t, 0) / n;
  const meanV = points.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - meanT) * (p.v - meanV);
    den += (p.t - meanT) ** 2;
  }
  return den === 0 ? NaN : (num / den) * 60;
}

/** The points of the second half of the run (t >= half the last time). */
export function secondHalf(points: readonly Point[]): Point[] {
  if (points.length === 0) return [];
  const half = points[points.length - 1]!.t / 2;
  return points.filter((p) => p.t >= half);
}

/** The value of the first point at or after `t`, or undefined. */
export function valueAt(points: readonly Point[], t: number): number | undefined {
  return points.find((p) => p.t >= t)?.v;
}

export interface SeriesSummary {
  readonly at_1min: number | null;
  readonly end: number | null;
  /** MiB per minute over the second half (least squares). */
  readonly slope_per_min_second_half: number | null;
  readonly max_sampled: number | null;
}

export function summarise(points: readonly Point[]): SeriesSummary {
  const r = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? null : Math.round(n * 100) / 100);
  const slope = slopePerMinute(secondHalf(points));
  return {
    at_1min: r(valueAt(points, 60)),
    end: r(points[points.length - 1]?.v),
    slope_per_min_second_half: r(slope),
    max_sampled: r(points.length ? Math.max(...points.map((p) => p.v)) : undefined),
  };
}
