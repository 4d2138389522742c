/**
 * The V8 flags the agent runs with. brevis-agent's shebang (main.ts) carries
 * the same ones, and whatever starts the agent with `node main.js` (the
 * demo, the benchmark) passes these; a test holds the two equal.
 *
 * --max-semi-space-size=2 (MB): V8's young generation grows to 2 x 16 MB by
 * default, and once grown stays resident. The agent's allocations are short
 * bursts (a sync, a Workload API response) that do not need it: with 2 MB,
 * an agent holding 10,000 SVIDs is about 25 MB smaller and serves the
 * Workload API as fast (README, Performance).
 *
 * --expose-gc: lets the agent collect the garbage of a large sync (thousands
 * of key pairs and their key objects) a second after it, and then hand the
 * freed pages back to the kernel (agent/memory/free-memory.ts), instead of
 * holding them until V8 next runs out of room.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--expose-gc'];
