import * as fs from 'node:fs';
import type { Node } from '../config/reader';
import { HELPER_KEYS, parseHelperConfig, type HelperConfig } from './exporterhelper/exporterhelper';

/** Options shared by the otlp and otlphttp exporters. */
export interface OtlpClientConfig {
  readonly headers: Readonly<Record<string, string>>;
  readonly compression: 'gzip' | 'none';
  readonly tls: TlsConfig;
  readonly helper: HelperConfig;
}

export interface TlsConfig {
  readonly insecure: boolean;
  readonly caPem: Buffer | undefined;
  readonly insecureSkipVerify: boolean;
}

export const OTLP_CLIENT_KEYS = ['headers', 'compression', 'tls', ...HELPER_KEYS] as const;

export function parseOtlpClientConfig(at: (key: string) => Node): OtlpClientConfig {
  const tls = at('tls').struct(['insecure', 'ca_file', 'insecure_skip_verify']);
  let caPem: Buffer | undefined;
  const caFile = tls('ca_file').string('');
  if (caFile) {
    try {
      caPem = fs.readFileSync(caFile);
    } catch (err) {
      tls('ca_file').report(`cannot read ${caFile}: ${(err as Error).message}`);
    }
  }
  return {
    headers: at('headers').stringMap(),
    compression: at('compression').oneOf<'gzip' | 'none'>('gzip', ['gzip', 'none']),
    tls: {
      insecure: tls('insecure').boolean(false),
      caPem,
      insecureSkipVerify: tls('insecure_skip_verify').boolean(false),
    },
    helper: parseHelperConfig(at),
  };
}
