import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MARKER_MAGIC } from '../../bench/obi';
import { TAIL_BYTES, matchWireLatency, pcapPackets, type Packet } from '../../bench/wire';

// A classic pcap file as tcpdump -w writes it on the loopback (Ethernet link type), built by hand.

interface Segment {
  readonly timeMs: number;
  readonly src: number;
  readonly dst: number;
  readonly seq: number;
  readonly payload: Buffer;
}

function pcapFile(segments: readonly Segment[], nano = false): Buffer {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20);
  const records = segments.map((s) => {
    const ethernet = Buffer.alloc(14);
    ethernet.writeUInt16BE(0x0800, 12);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + 20 + s.payload.length, 2);
    ip[9] = 6;
    const tcp = Buffer.alloc(20);
    tcp.writeUInt16BE(s.src, 0);
    tcp.writeUInt16BE(s.dst, 2);
    tcp.writeUInt32BE(s.seq >>> 0, 4);
    tcp[12] = 5 << 4;
    const packet = Buffer.concat([ethernet, ip, tcp, s.payload]);
    const record = Buffer.alloc(16);
    const seconds = Math.floor(s.timeMs / 1000);
    const fraction = Math.round((s.timeMs - seconds * 1000) * (nano ? 1e6 : 1e3));
    record.writeUInt32LE(seconds, 0);
    record.writeUInt32LE(fraction, 4);
    record.writeUInt32LE(packet.length, 8);
    record.writeUInt32LE(packet.length, 12);
    return Buffer.concat([record, packet]);
  });
  return Buffer.concat([header, ...records]);
}

const SERVER = 4317;
const SINK = 9999;
const CLIENT = 50000;
const FORWARDER = 50001;
const T0 = 1_700_000_000_000;

/** A request as sent: filler, then a unique tail. */
function request(index: number): Buffer {
  const tail = Buffer.alloc(TAIL_BYTES, index + 1);
  return Buffer.concat([Buffer.alloc(100, 0xee), tail]);
}

function marker(index: number): Buffer {
  const b = Buffer.alloc(MARKER_MAGIC.length + 8);
  MARKER_MAGIC.copy(b);
  b.writeUInt32BE(index, MARKER_MAGIC.length);
  return b;
}

const tails = new Map([0, 1, 2].map((i) => [request(i).toString('hex', request(i).length - TAIL_BYTES), i] as [string, number]));
const options = { inboundPorts: new Set([SERVER]), sinkPort: SINK, tails, fromMs: T0, toMs: T0 + 1000 };

describe('wire latency', () => {
  test('reads timestamps, ports, sequence numbers and payloads of a microsecond and a nanosecond pcap', () => {
    const segments: Segment[] = [{ timeMs: T0 + 1.5, src: CLIENT, dst: SERVER, seq: 4294967290, payload: Buffer.from('hello') }];
    for (const nano of [false, true]) {
      const packets: Packet[] = [...pcapPackets(pcapFile(segments, nano))];
      assert.equal(packets.length, 1);
      assert.ok(Math.abs(packets[0]!.timeMs - (T0 + 1.5)) < 1e-3);
      assert.equal(packets[0]!.srcPort, CLIENT);
      assert.equal(packets[0]!.dstPort, SERVER);
      assert.equal(packets[0]!.seq, 4294967290);
      assert.equal(packets[0]!.payload.toString(), 'hello');
    }
    assert.throws(() => [...pcapPackets(Buffer.alloc(24))], /unknown magic/);
  });

  test('pairs each request in with the forward carrying its marker, also across segments', () => {
    const first = Buffer.concat([Buffer.alloc(50), marker(0), Buffer.alloc(50)]);
    // The second forward's marker is split between two segments.
    const second = Buffer.concat([Buffer.alloc(30), marker(1)]);
    const segments: Segment[] = [
      { timeMs: T0 + 10, src: CLIENT, dst: SERVER, seq: 1, payload: request(0) },
      { timeMs: T0 + 12, src: FORWARDER, dst: SINK, seq: 1, payload: first },
      { timeMs: T0 + 20, src: CLIENT, dst: SERVER, seq: 1 + 116, payload: request(1) },
      { timeMs: T0 + 23, src: FORWARDER, dst: SINK, seq: 1 + first.length, payload: second.subarray(0, 35) },
      { timeMs: T0 + 24, src: FORWARDER, dst: SINK, seq: 1 + first.length + 35, payload: second.subarray(35) },
    ];
    const result = matchWireLatency(pcapPackets(pcapFile(segments)), options);
    assert.equal(result.requestsIn, 2);
    assert.equal(result.markersOut, 2);
    assert.equal(result.unmatchedOut, 0);
    assert.deepEqual(result.latencyMs.map((ms) => Math.round(ms * 1000) / 1000), [2, 4]);
  });

  test('a retransmitted segment counts neither a request nor a marker twice', () => {
    const forward = Buffer.concat([Buffer.alloc(10), marker(2)]);
    const segments: Segment[] = [
      { timeMs: T0 + 10, src: CLIENT, dst: SERVER, seq: 100, payload: request(2) },
      { timeMs: T0 + 11, src: CLIENT, dst: SERVER, seq: 100, payload: request(2) },
      { timeMs: T0 + 15, src: FORWARDER, dst: SINK, seq: 7, payload: forward },
      { timeMs: T0 + 19, src: FORWARDER, dst: SINK, seq: 7, payload: forward },
      // The same request again, a pool cycle later: must pair with its own arrival, not the duplicate's.
      { timeMs: T0 + 500, src: CLIENT, dst: SERVER, seq: 216, payload: request(2) },
      { timeMs: T0 + 503, src: FORWARDER, dst: SINK, seq: 7 + forward.length, payload: forward },
    ];
    const result = matchWireLatency(pcapPackets(pcapFile(segments)), options);
    assert.equal(result.retransmitted, 2);
    assert.equal(result.requestsIn, 2);
    assert.equal(result.markersOut, 2);
    assert.deepEqual(result.latencyMs.map((ms) => Math.round(ms)), [5, 3]);
  });

  test('a request whose forward was lost does not pair with the next occurrence of its pool index', () => {
    const segments: Segment[] = [
      { timeMs: T0 + 10, src: CLIENT, dst: SERVER, seq: 1, payload: request(1) },
      // Its forward never shows up; the pool comes round again 2.56 s later.
      { timeMs: T0 + 2570, src: CLIENT, dst: SERVER, seq: 117, payload: request(1) },
      { timeMs: T0 + 2573, src: FORWARDER, dst: SINK, seq: 1, payload: marker(1) },
    ];
    const result = matchWireLatency(pcapPackets(pcapFile(segments)), { ...options, toMs: T0 + 5000 });
    assert.deepEqual(result.latencyMs.map((ms) => Math.round(ms)), [3]);
    assert.equal(result.unpairedIn, 1);
  });

  test('counts only requests that arrived inside the window, and forwards without a captured request as unmatched', () => {
    const segments: Segment[] = [
      { timeMs: T0 - 5, src: FORWARDER, dst: SINK, seq: 1, payload: marker(1) },
      { timeMs: T0 - 3, src: CLIENT, dst: SERVER, seq: 1, payload: request(0) },
      { timeMs: T0 - 1, src: FORWARDER, dst: SINK, seq: 1 + 20, payload: marker(0) },
      { timeMs: T0 + 2000, src: CLIENT, dst: SERVER, seq: 117, payload: request(2) },
      { timeMs: T0 + 2001, src: FORWARDER, dst: SINK, seq: 1 + 40, payload: marker(2) },
      // Not a request of the pool: ignored.
      { timeMs: T0 + 10, src: CLIENT, dst: SERVER, seq: 233, payload: Buffer.alloc(200, 7) },
    ];
    const result = matchWireLatency(pcapPackets(pcapFile(segments)), options);
    assert.equal(result.requestsIn, 2);
    assert.equal(result.markersOut, 3);
    assert.equal(result.unmatchedOut, 1);
    assert.deepEqual(result.latencyMs, []);
  });
});
