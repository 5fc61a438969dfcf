/**
 * What the shared-heap driver (run.ts) and its Workers (worker.ts) send each
 * other, and the payload pattern both write and verify.
 *
 * @module
 */

/** The operation mixes a Worker runs (sizes in worker.ts `sizeFor` and `refillStep`). */
export type WorkloadName = "mixed" | "small" | "refill" | "refill-same" | "pages";

/** The job a Worker receives. */
export interface SharedRunJob {
  /** The shared heap's buffer (the heap was created over all of it). */
  readonly heap: SharedArrayBuffer;
  /** The heap's base address (the address of the buffer's byte 0). */
  readonly baseAddress: number;
  /** Int32 slots through which Workers hand live blocks to each other. */
  readonly exchange: SharedArrayBuffer;
  /** Key and size of every live payload, by (address - base) / 8: two Int32Arrays of equal length. */
  readonly registry: SharedArrayBuffer;
  /** Word 0: the start signal. */
  readonly control: SharedArrayBuffer;
  /** This Worker's index, 0 to 14 (its owner id in keys is index + 1). */
  readonly index: number;
  /** The seed of its operations. */
  readonly seed: number;
  /** How many operations it runs. */
  readonly operations: number;
  /** The operation mix. */
  readonly workload: WorkloadName;
  /** Whether payloads are filled and verified and the registry kept (off to measure the allocator alone). */
  readonly fill: boolean;
  /** Whether it detaches at the end (else the driver reclaims its slot). */
  readonly detach: boolean;
  /** For the lock-timeout test: leave the block lock held and stop. */
  readonly stopHoldingLock: boolean;
  /**
   * Operations of the same mix run before the Worker reports ready, on a
   * table of its own, every block freed after: the JIT compiles the loop and
   * the caches fill, so the timed run measures the steady state.
   */
  readonly warmupOperations: number;
  /** Run against a stand-in heap that does nothing: the workload loop's own cost. */
  readonly nullHeap: boolean;
}

/** What a Worker reports when its operations are done. */
export interface SharedRunResult {
  /** "done". */
  kind: "done";
  /** The Worker's index. */
  index: number;
  /** Its slot in the heap. */
  slot: number;
  /** Operations run. */
  operations: number;
  /** Of which allocations. */
  allocs: number;
  /** Frees. */
  frees: number;
  /** Reallocs. */
  reallocs: number;
  /** Blocks put into the exchange table. */
  handedOver: number;
  /** Blocks taken from it (allocated by any Worker). */
  received: number;
  /** Payloads or registry entries found wrong. */
  corrupt: number;
  /** The first of them, described. */
  firstCorruption: string;
  /** The addresses it still holds. */
  live: number[];
  /** Time its operations took. */
  elapsedMs: number;
}

/** Fills `bytes` with the pattern of `key`. */
export function fillPattern(bytes: Uint8Array, key: number): void {
  const seed = Math.imul(key, 0x9e3779b1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed >>> ((i & 3) << 3)) + i;
}

/**
 * The first byte of `bytes` that differs from the pattern of `key`, or -1
 * (also when the length is not `sizeBytes`: then 0 is returned).
 */
export function verifyPattern(bytes: Uint8Array, key: number, sizeBytes: number): number {
  if (bytes.length !== sizeBytes) return 0;
  const seed = Math.imul(key, 0x9e3779b1);
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] !== (((seed >>> ((i & 3) << 3)) + i) & 0xff)) return i;
  }
  return -1;
}
