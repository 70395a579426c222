import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { MARKER_MAGIC } from './obi';

// Added latency measured on the wire: tcpdump on the loopback interface timestamps, in the kernel,
// the packet that completes each request sent to the server and the first packet of the server's
// forward that carries the request's marker. The load generator's and the sink's event loops (one
// process on the other core) are out of the measurement, which the sink-clock latency includes.

/** Bytes at the end of each sent request that identify it (its pool index) on the wire. */
export const TAIL_BYTES = 16;

export interface Packet {
  /** Capture time, milliseconds since the epoch (the kernel's clock, microsecond resolution or better). */
  readonly timeMs: number;
  readonly srcPort: number;
  readonly dstPort: number;
  /** TCP sequence number of the payload's first byte. */
  readonly seq: number;
  readonly payload: Buffer;
}

export interface Capture {
  /** Stops tcpdump; resolves with what it reports, after the file is complete. */
  stop(): Promise<{ captured: number; dropped: number }>;
}

/**
 * Starts `tcpdump -i lo` for TCP segments with payload sent to `ports`, pinned to `cpu` (the load
 * generator's core, so the capture's user-space work stays off the server's). Resolves once it
 * listens. Throws with tcpdump's own message when it cannot run (not installed, no CAP_NET_RAW).
 */
/** tcpdump processes still running: killed when the harness exits, whatever the reason. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startCapture(file: string, ports: readonly number[], cpu: number): Promise<Capture> {
  const filter = `tcp and dst host 127.0.0.1 and (${ports.map((p) => `dst port ${p}`).join(' or ')}) and greater 120`;
  // -B: a 64 MiB kernel buffer, so bursts are not dropped; -s 0: whole packets; -n: no lookups.
  const child = spawn('taskset', ['-c', String(cpu), 'tcpdump', '-i', 'lo', '-n', '-s', '0', '-B', '65536', '-w', file, filter], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('tcpdump did not start listening within 10 s')), 10_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.once('error', (err) => fail(new Error(`cannot run tcpdump: ${err.message}`)));
    child.once('exit', (code) => fail(new Error(`tcpdump exited (${code}): ${stderr.trim()}`)));
    const onData = () => {
      if (!stderr.includes('listening on')) return;
      clearTimeout(timer);
      child.stderr.off('data', onData);
      child.removeAllListeners('exit');
      child.removeAllListeners('error');
      resolve();
    };
    child.stderr.on('data', onData);
  });
  return { stop: () => stopCapture(child, () => stderr) };
}

function stopCapture(child: ChildProcess, stderr: () => string): Promise<{ captured: number; dropped: number }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) {
      reject(new Error(`tcpdump had exited: ${stderr().trim()}`));
      return;
    }
    child.once('exit', () => {
      const text = stderr();
      const count = (what: string) => Number(new RegExp(`(\\d+) packets? ${what}`).exec(text)?.[1] ?? NaN);
      resolve({ captured: count('captured'), dropped: count('dropped by kernel') });
    });
    child.kill('SIGINT');
  });
}

const PCAP_MICRO = 0xa1b2c3d4;
const PCAP_NANO = 0xa1b23c4d;
const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_LINUX_SLL2 = 276;

/** IPv4 TCP segments of a classic pcap file (what tcpdump -w writes); other packets are skipped. */
export function* pcapPackets(file: Buffer): Generator<Packet> {
  if (file.length < 24) throw new Error('not a pcap file: shorter than its 24-byte header');
  const magicLE = file.readUInt32LE(0);
  const magicBE = file.readUInt32BE(0);
  const littleEndian = magicLE === PCAP_MICRO || magicLE === PCAP_NANO;
  if (!littleEndian && magicBE !== PCAP_MICRO && magicBE !== PCAP_NANO) throw new Error('not a pcap file: unknown magic number');
  const u32 = (at: number) => (littleEndian ? file.readUInt32LE(at) : file.readUInt32BE(at));
  const fractionMs = (littleEndian ? magicLE : magicBE) === PCAP_NANO ? 1e-6 : 1e-3;
  const linkType = u32(20) & 0xffff;
  const linkHeader =
    linkType === LINKTYPE_ETHERNET ? 14 : linkType === LINKTYPE_LINUX_SLL ? 16 : linkType === LINKTYPE_LINUX_SLL2 ? 20 : -1;
  if (linkHeader < 0) throw new Error(`pcap link type ${linkType} is not supported (Ethernet or Linux cooked only)`);
  let at = 24;
  while (at + 16 <= file.length) {
    const timeMs = u32(at) * 1000 + u32(at + 4) * fractionMs;
    const captured = u32(at + 8);
    const start = at + 16;
    at = start + captured;
    if (at > file.length) break; // the last record was cut short
    const ip = start + linkHeader;
    if (ip + 20 > at || file[ip]! >> 4 !== 4 || file[ip + 9] !== 6) continue;
    const ipHeader = (file[ip]! & 0x0f) * 4;
    const ipEnd = Math.min(at, ip + file.readUInt16BE(ip + 2));
    const tcp = ip + ipHeader;
    if (tcp + 20 > ipEnd) continue;
    const payloadStart = tcp + (file[tcp + 12]! >> 4) * 4;
    if (payloadStart >= ipEnd) continue;
    yield {
      timeMs,
      srcPort: file.readUInt16BE(tcp),
      dstPort: file.readUInt16BE(tcp + 2),
      seq: file.readUInt32BE(tcp + 4),
      payload: file.subarray(payloadStart, ipEnd),
    };
  }
}

export interface WireMatchOptions {
  /** The server's listening ports: segments to them are requests in. */
  readonly inboundPorts: ReadonlySet<number>;
  /** The sink's port: segments to it are the server's forwards. */
  readonly sinkPort: number;
  /** Hex of the last TAIL_BYTES bytes of each request as sent, by pool index. */
  readonly tails: ReadonlyMap<string, number>;
  /** Only requests completed in [fromMs, toMs] (epoch ms) are counted. */
  readonly fromMs: number;
  readonly toMs: number;
}

export interface WireLatency {
  /** Request in -> first forwarded segment carrying its marker, ms, per counted request. */
  readonly latencyMs: number[];
  /** Segments to the server that completed a known request. */
  readonly requestsIn: number;
  /** Markers seen in forwards. */
  readonly markersOut: number;
  /** Markers with no earlier request in of that index (the capture started after it arrived). */
  readonly unmatchedOut: number;
  /** Segments that repeated bytes already seen (TCP retransmissions; counted once). */
  readonly retransmitted: number;
  /** Requests in whose forward was never seen (an older arrival of an index passed over). */
  readonly unpairedIn: number;
}

/**
 * Pairs requests in with forwards out. A request is "in" when a segment to the server ends with its
 * tail (the load generator writes each request in one go, so its last byte ends a segment); it is
 * "out" when its marker (MARKER_MAGIC + 4-byte pool index) first appears in a segment to the sink.
 * The pool repeats, so each index keeps a FIFO of arrival times.
 */
export function matchWireLatency(packets: Iterable<Packet>, o: WireMatchOptions): WireLatency {
  const arrivals = new Map<number, number[]>();
  const latencyMs: number[] = [];
  let requestsIn = 0;
  let markersOut = 0;
  let unmatchedOut = 0;
  let unpairedIn = 0;
  // A marker may straddle two segments of one connection: keep the previous segment's last bytes.
  const carry = new Map<number, Buffer>();
  const overlap = MARKER_MAGIC.length + 4 - 1;
  // Per connection, the sequence number after the last byte seen: a retransmitted segment must not
  // count a request or a marker twice (it happens on the loopback too, rarely).
  const seenUpTo = new Map<number, number>();
  let retransmitted = 0;
  for (const segment of packets) {
    const flow = segment.srcPort * 65536 + segment.dstPort;
    const end = (segment.seq + segment.payload.length) >>> 0;
    const previous = seenUpTo.get(flow);
    // 32-bit sequence arithmetic: how far this segment's end is past what was seen.
    const fresh = previous === undefined ? segment.payload.length : Math.min(segment.payload.length, (end - previous) | 0);
    if (fresh <= 0) {
      retransmitted++;
      continue;
    }
    if (fresh < segment.payload.length) retransmitted++;
    seenUpTo.set(flow, end);
    const p = fresh < segment.payload.length ? { ...segment, payload: segment.payload.subarray(segment.payload.length - fresh) } : segment;
    if (o.inboundPorts.has(p.dstPort)) {
      if (p.payload.length < TAIL_BYTES) continue;
      const index = o.tails.get(p.payload.toString('hex', p.payload.length - TAIL_BYTES));
      if (index === undefined) continue;
      requestsIn++;
      let queue = arrivals.get(index);
      if (!queue) arrivals.set(index, (queue = []));
      queue.push(p.timeMs);
    } else if (p.dstPort === o.sinkPort) {
      const previous = carry.get(p.srcPort);
      const data = previous ? Buffer.concat([previous, p.payload]) : p.payload;
      carry.set(p.srcPort, Buffer.from(data.subarray(Math.max(0, data.length - overlap))));
      for (let at = data.indexOf(MARKER_MAGIC); at >= 0 && at + MARKER_MAGIC.length + 4 <= data.length; at = data.indexOf(MARKER_MAGIC, at + 1)) {
        markersOut++;
        // The newest arrival of this index before the forward: the pool repeats every few seconds,
        // so an older one still waiting lost its forward (not captured, refused), and pairing
        // with it would add a whole pool cycle to this request's latency.
        const queue = arrivals.get(data.readUInt32BE(at + MARKER_MAGIC.length));
        let newest = -1;
        while (queue && newest + 1 < queue.length && queue[newest + 1]! <= p.timeMs) newest++;
        if (newest < 0) {
          unmatchedOut++;
          continue;
        }
        unpairedIn += newest;
        const arrivedAt = queue!.splice(0, newest + 1)[newest]!;
        if (arrivedAt >= o.fromMs && arrivedAt <= o.toMs) latencyMs.push(p.timeMs - arrivedAt);
      }
    }
  }
  return { latencyMs, requestsIn, markersOut, unmatchedOut, retransmitted, unpairedIn };
}

/** Reads a capture file, pairs its requests, and deletes it. */
export function wireLatencyFromFile(file: string, o: WireMatchOptions): WireLatency {
  try {
    return matchWireLatency(pcapPackets(fs.readFileSync(file)), o);
  } finally {
    fs.rmSync(file, { force: true });
  }
}
