/**
 * The V8 flags the CA server runs with. brevis-ca's shebang (main.ts)
 * carries the same ones, and whatever starts the CA with `node main.js`
 * (the demo, the benchmark) passes these; a test holds the two equal.
 *
 * --initial-old-space-size=512 (MB): by default V8 sizes the old
 * generation from the live heap, which for a CA is small (tens of MB), so
 * under sustained issuance it runs a full mark-compact every second or two,
 * each pausing the event loop for 10 to 30 ms with its incremental steps:
 * the tail of the mint latency. Starting the old generation at 512 MB makes
 * those collections rare; measured at half the maximum mint rate, p99 went
 * from 14-18 ms to 8-12 ms (README, Performance). The memory is reserved
 * only as it is used: the CA's resident size grows by what it collects later.
 */
export const CA_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=512'];
