// The bench's seeded generator (mulberry32), so a test corpus is the same on every run and a
// failure can be replayed; one definition for bench and tests (tests may import bench/, not the reverse).
export { prng as seededRandom } from '../../bench/obi';
