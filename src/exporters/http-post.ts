import * as http from 'node:http';
import * as https from 'node:https';
import type * as tls from 'node:tls';
import { RetryableError } from '../component/errors';

// The HTTP POST the HTTP exporters (otlphttp, prometheusremotewrite) send with: keep-alive agents,
// the whole response read, a transport failure retryable, an abort rejected with its reason.

export interface PostResponse {
  readonly status: number;
  readonly body: Buffer;
  readonly contentType: string;
  readonly retryAfter: string | undefined;
}

export class HttpPoster {
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

  /** `tlsOptions`: for https URLs only. */
  constructor(private readonly tlsOptions: tls.ConnectionOptions) {}

  post(url: URL, headers: Record<string, string>, body: Buffer, signal: AbortSignal): Promise<PostResponse> {
    const secure = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const request = (secure ? https : http).request(
        url,
        {
          method: 'POST',
          headers: { ...headers, 'content-length': String(body.length) },
          agent: secure ? this.agents.https : this.agents.http,
          signal,
          ...(secure ? this.tlsOptions : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks),
              contentType: String(res.headers['content-type'] ?? ''),
              retryAfter: res.headers['retry-after'],
            }),
          );
          res.on('error', (err) => reject(new RetryableError(`reading the response from ${url.toString()} failed: ${err.message}`)));
        },
      );
      request.on('error', (err) => {
        if (signal.aborted) reject(signal.reason instanceof Error ? signal.reason : new RetryableError('export aborted'));
        else reject(new RetryableError(`POST ${url.toString()} failed: ${err.message}`));
      });
      request.end(body);
    });
  }

  /** Closes the kept-alive connections (at shutdown). */
  destroy(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}
