// Pending edges of the service graph: half a request (a CLIENT span, or a SERVER span) waits here
// for its other half, keyed by trace id + the client's span id, until `ttl` runs out. The same
// structure as the Collector's servicegraph store: a map in creation order, so expiry only looks
// at the oldest entries.

export type ConnectionType = '' | 'messaging_system' | 'database';

export interface Edge {
  readonly key: string;
  connectionType: ConnectionType;
  clientService: string;
  serverService: string;
  clientLatencySec: number;
  serverLatencySec: number;
  /** Either side had status ERROR. */
  failed: boolean;
  /** client_<dim> / server_<dim> -> value. */
  readonly dimensions: Map<string, string>;
  readonly expiresAt: number;
}

export type UpsertResult = 'new' | 'updated' | 'full';

export class EdgeStore {
  private readonly edges = new Map<string, Edge>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxItems: number,
    private readonly onComplete: (edge: Edge) => void,
    private readonly onExpire: (edge: Edge) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.edges.size;
  }

  /**
   * Applies `update` to the edge under `key`, creating it if needed. A complete edge (both sides
   * known) is reported through onComplete and removed. 'full' means a new edge did not fit.
   */
  upsert(key: string, update: (edge: Edge) => void): UpsertResult {
    const stored = this.edges.get(key);
    if (stored) {
      update(stored);
      if (isComplete(stored)) {
        this.edges.delete(key);
        this.onComplete(stored);
      }
      return 'updated';
    }
    const edge: Edge = {
      key,
      connectionType: '',
      clientService: '',
      serverService: '',
      clientLatencySec: 0,
      serverLatencySec: 0,
      failed: false,
      dimensions: new Map(),
      expiresAt: this.now() + this.ttlMs,
    };
    update(edge);
    if (isComplete(edge)) {
      this.onComplete(edge);
      return 'new';
    }
    if (this.edges.size >= this.maxItems) return 'full';
    this.edges.set(key, edge);
    return 'new';
  }

  /** Removes every edge whose ttl ran out, oldest first; returns how many. */
  expire(): number {
    const now = this.now();
    let expired = 0;
    for (const [key, edge] of this.edges) {
      if (edge.expiresAt > now) break;
      this.edges.delete(key);
      this.onExpire(edge);
      expired++;
    }
    return expired;
  }
}

function isComplete(edge: Edge): boolean {
  return edge.clientService.length > 0 && edge.serverService.length > 0;
}
