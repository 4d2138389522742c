/**
 * Handing the C heap's freed pages back to the kernel after large syncs.
 *
 * Minting thousands of SVIDs in one sync (key generation, CSRs, TLS and
 * HTTP/2 buffers, the certificates' parsing) allocates and frees many small
 * native blocks. glibc keeps freed blocks in the arena that served them and
 * returns only an arena's top to the kernel, so after a large sync or a
 * rotation storm tens of megabytes of free pages stay resident: measured
 * here, an agent holding 10,000 SVIDs sat at 180 to 240 MB, and at about
 * 140 MB once those pages were released (README, Performance).
 *
 * The pages are released with glibc's malloc_trim(0), through the agent's
 * addon (agent/native/peercred.c). V8 frees the native memory of a sync's
 * garbage (the key objects of thousands of key pairs, buffers) only when it
 * collects it, and an idle agent may not collect for a long time: measured
 * in the benchmark, 20 s after a sync of 10,000 SVIDs half of the buffers
 * held were still garbage. So the first release, a second after the sync,
 * collects first when the agent runs with --expose-gc (its node flags,
 * agent/cli/node-flags.ts; about 20 ms with 10,000 SVIDs), and the later
 * ones only trim, catching what V8 freed since. It runs only after syncs
 * that changed many SVIDs, never per request. With another C library the
 * trim does nothing; without --expose-gc the collection is left to V8.
 */
import { loadAddon } from '../../ca/native/addon.js';

interface TrimAddon {
  mallocTrim(): boolean;
  mallocTrimSupported: boolean;
}

let addon: TrimAddon | null | undefined;

/** malloc_trim(0): true when memory was released; false without glibc or without the addon. */
export function releaseFreeMemory(): boolean {
  if (addon === undefined) {
    try {
      addon = loadAddon<TrimAddon>('peercred');
    } catch {
      addon = null; // the agent refuses to run without the addon elsewhere (peer credentials)
    }
  }
  return addon?.mallocTrimSupported ? addon.mallocTrim() : false;
}

/** Changes in one sync (SVIDs stored, entries added, updated or removed) that make it a large one. */
export const LARGE_SYNC_CHANGES = 100;

/** When memory is released after a large sync, ms after it: V8's collections free native memory over the following seconds. */
export const RELEASE_AFTER_MS: readonly number[] = [1_000, 4_000, 10_000, 30_000];

/** A full garbage collection when the process was started with --expose-gc; false otherwise. */
export function collectGarbage(): boolean {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return false;
  gc();
  return true;
}

/**
 * Schedules releases after large syncs; a new large sync restarts the
 * schedule. The first release of a schedule collects garbage before it
 * trims (`collect`), the later ones only trim.
 */
export class MemoryReleaser {
  readonly #release: () => unknown;
  readonly #collect: () => unknown;
  readonly #afterMs: readonly number[];
  #timers: NodeJS.Timeout[] = [];

  constructor(options: { release?: () => unknown; collect?: () => unknown; afterMs?: readonly number[] } = {}) {
    this.#release = options.release ?? releaseFreeMemory;
    this.#collect = options.collect ?? collectGarbage;
    this.#afterMs = options.afterMs ?? RELEASE_AFTER_MS;
  }

  /** Told how many SVIDs and entries a sync changed. */
  afterSync(changes: number): void {
    if (changes < LARGE_SYNC_CHANGES) return;
    this.close();
    this.#timers = this.#afterMs.map((ms, i) =>
      setTimeout(() => {
        try {
          if (i === 0) this.#collect();
          this.#release();
        } catch {
          // Releasing memory is an optimisation: never a reason to stop the agent.
        }
      }, ms).unref(),
    );
  }

  /** Cancels the releases still scheduled. */
  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
  }
}
