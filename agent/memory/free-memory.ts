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
 * garbage only when it collects it, which may be seconds later, so the
 * release runs a few times after the sync, not once. It costs a few
 * milliseconds, and runs only after syncs that changed many SVIDs, never per
 * request. With another C library it does nothing.
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

/** Schedules releases after large syncs; a new large sync restarts the schedule. */
export class MemoryReleaser {
  readonly #release: () => unknown;
  readonly #afterMs: readonly number[];
  #timers: NodeJS.Timeout[] = [];

  constructor(options: { release?: () => unknown; afterMs?: readonly number[] } = {}) {
    this.#release = options.release ?? releaseFreeMemory;
    this.#afterMs = options.afterMs ?? RELEASE_AFTER_MS;
  }

  /** Told how many SVIDs and entries a sync changed. */
  afterSync(changes: number): void {
    if (changes < LARGE_SYNC_CHANGES) return;
    this.close();
    this.#timers = this.#afterMs.map((ms) =>
      setTimeout(() => {
        try {
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
