/** Agent-side figures (Workload API fetch latency, rotation storm, agent memory). */
import type { BenchCa } from './ca-process.js';

export async function benchAgentSide(_o: { ca: BenchCa; quick: boolean; log: (m: string) => void }): Promise<Record<string, number>> {
  return {};
}
