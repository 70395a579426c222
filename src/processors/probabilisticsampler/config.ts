import type { Node } from '../../config/reader';
import { MIN_SAMPLING_PROBABILITY, NUM_HEX_DIGITS } from '../../pdata/sampling-threshold';

// The Collector's probabilistic_sampler config (v0.160.0): same keys, defaults and validation
// messages. The logs-only keys are accepted and, as in the Collector's traces path, change nothing.

export type SamplerMode = 'hash_seed' | 'proportional' | 'equalizing';
export const SAMPLER_MODES: readonly SamplerMode[] = ['hash_seed', 'proportional', 'equalizing'];

export interface ProbabilisticSamplerConfig {
  /** As the Collector holds it: a float32 (Math.fround of the value written). */
  readonly samplingPercentage: number;
  readonly hashSeed: number;
  /** '' when not set: hash_seed, the Collector's default. */
  readonly mode: SamplerMode | '';
  readonly failClosed: boolean;
  readonly samplingPrecision: number;
  /** Logs only in the Collector; kept for config compatibility. */
  readonly attributeSource: 'traceID' | 'record';
  readonly fromAttribute: string;
  readonly samplingPriority: string;
}

export const PROBABILISTIC_SAMPLER_KEYS = [
  'sampling_percentage',
  'hash_seed',
  'mode',
  'fail_closed',
  'sampling_precision',
  'attribute_source',
  'from_attribute',
  'sampling_priority',
] as const;

export const DEFAULT_PRECISION = 4;

/** Go's %f for a float32 (6 decimals; +Inf, NaN). */
function goFixed(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return value.toFixed(6);
}

/** Go's %g for a float32: the shortest digits that read back as the same float32. */
function goShortFloat32(value: number): string {
  for (let digits = 1; digits <= 9; digits++) {
    const text = value.toPrecision(digits);
    if (Math.fround(Number(text)) === value) return goG(Number(text), digits);
  }
  return String(value);
}

function goG(value: number, digits: number): string {
  const exponent = value === 0 ? 0 : Math.floor(Math.log10(Math.abs(value)));
  if (exponent < -4 || exponent >= Math.max(digits, 21)) {
    const [mantissa, exp] = value.toExponential(digits - 1).split('e') as [string, string];
    const sign = exp.startsWith('-') ? '-' : '+';
    const magnitude = exp.replace(/^[+-]/, '');
    return `${mantissa}e${sign}${magnitude.padStart(2, '0')}`;
  }
  return String(value);
}

export function parseProbabilisticSamplerConfig(node: Node): ProbabilisticSamplerConfig {
  const at = node.struct(PROBABILISTIC_SAMPLER_KEYS);
  const percentageNode = at('sampling_percentage');
  let samplingPercentage = 0;
  if (!percentageNode.isAbsent) {
    const raw = percentageNode.value;
    const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof n !== 'number' || (typeof raw === 'string' && Number.isNaN(n))) {
      percentageNode.report(`expected a number, got ${JSON.stringify(raw)}`);
    } else {
      const pct = Math.fround(n);
      const ratio = pct / 100;
      if (!Number.isFinite(pct)) percentageNode.report(`sampling rate is invalid: ${goFixed(pct)}%`);
      else if (ratio < 0) percentageNode.report(`sampling rate is negative: ${goFixed(pct)}%`);
      else if (ratio !== 0 && ratio < MIN_SAMPLING_PROBABILITY) percentageNode.report(`sampling rate is too small: ${goShortFloat32(pct)}%`);
      else samplingPercentage = pct;
    }
  }
  const hashSeed = at('hash_seed').integer(0, 0, 0xffffffff);
  const modeNode = at('mode');
  let mode: SamplerMode | '' = '';
  if (!modeNode.isAbsent) {
    const value = modeNode.value;
    if (value === '' || (typeof value === 'string' && (SAMPLER_MODES as readonly string[]).includes(value))) mode = value as SamplerMode | '';
    else modeNode.report(`unsupported sampler mode ${JSON.stringify(value)} (expected ${SAMPLER_MODES.join(', ')})`);
  }
  const failClosed = at('fail_closed').boolean(true);
  // The Collector rejects 0 and values above 14, not negative ones (they round to fewer digits).
  const precisionNode = at('sampling_precision');
  const samplingPrecision = precisionNode.integer(DEFAULT_PRECISION, Number.MIN_SAFE_INTEGER);
  if (!precisionNode.isAbsent && samplingPrecision === 0) precisionNode.report('invalid sampling precision: 0');
  else if (samplingPrecision > NUM_HEX_DIGITS) precisionNode.report(`sampling precision is too great, should be <= 14: ${samplingPrecision}`);
  const sourceNode = at('attribute_source');
  let attributeSource: 'traceID' | 'record' = 'traceID';
  if (!sourceNode.isAbsent) {
    const value = sourceNode.string('traceID');
    if (value === 'traceID' || value === 'record') attributeSource = value;
    else if (value !== '') sourceNode.report(`invalid attribute source: ${value}. Expected: traceID or record`);
  }
  return {
    samplingPercentage,
    hashSeed,
    mode,
    failClosed,
    samplingPrecision,
    attributeSource,
    fromAttribute: at('from_attribute').string(''),
    samplingPriority: at('sampling_priority').string(''),
  };
}
