// Node flags spansieve runs with: `npm start`, the `spansieve` bin (its shebang), the Dockerfile and
// the benchmark all pass these (a test keeps them in step).
//
// --max-semi-space-size=2 (MiB): spansieve's old generation is small (about 10 MiB live), and V8
// lets the young generation grow to 16 MiB semi-spaces; when the old generation's headroom is no
// larger than the young generation, V8 starts a full mark-compact every few hundred milliseconds
// instead of scavenging. Capping the young generation restores cheap scavenges and cuts peak RSS
// (docs/performance.md).
//
// --initial-heap-size=32 (MiB): with about 10 MiB live, V8 kept the old generation's limit within a
// few MiB of it and ran a mark-compact (5-9 ms pauses) every 0.7-0.9 s under steady load; with this
// floor under the limit they come every 2-3 s, and the CPU per span fell by about a tenth, peak RSS
// unchanged within noise (docs/performance.md, "Mark-compact cadence").
export const SPANSIEVE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--initial-heap-size=32'];
