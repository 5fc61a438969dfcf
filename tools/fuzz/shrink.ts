/**
 * Delta debugging (Zeller's ddmin, complement-only): drop chunks of a failing
 * operation list while it still fails, halving the chunk size when no chunk
 * can go, until single operations cannot be dropped or the budget runs out.
 *
 * Any sub-list of a stream is a valid stream (operations pick live
 * allocations by index, see stream.ts), so every candidate can run.
 *
 * @module
 */

import type { FuzzOp } from "./stream.ts";

/** Limits of a shrink. */
export interface ShrinkBudget {
  /** Most candidate lists to try. */
  readonly trialsMax: number;
  /** Wall-clock limit in milliseconds. */
  readonly millisecondsMax: number;
}

/** The result of a shrink. */
export interface ShrinkResult {
  /** The smallest failing list found. */
  readonly ops: FuzzOp[];
  /** Candidate lists tried. */
  readonly trials: number;
  /** True when every single operation was tried and none could go (1-minimal). */
  readonly minimal: boolean;
}

/**
 * Shrinks `ops`, which must fail, to a smaller list that still fails.
 *
 * @param ops A failing operation list.
 * @param fails Runs a candidate; true when it still fails.
 * @param budget Limits on trials and time.
 * @returns The smallest failing list found and how it was found.
 *
 * @example A failure that needs two particular operations
 * ```ts
 * import assert from "node:assert/strict";
 * import { shrinkOps } from "./shrink.ts";
 * import { streamOps } from "./stream.ts";
 *
 * const ops = streamOps(5, 300);
 * const [x, y] = [ops[40], ops[250]];
 * const result = shrinkOps(ops, (candidate) => candidate.includes(x) && candidate.includes(y));
 * assert.deepEqual(result.ops, [x, y]);
 * assert.ok(result.minimal);
 * ```
 */
export function shrinkOps(
  ops: readonly FuzzOp[],
  fails: (candidate: FuzzOp[]) => boolean,
  budget: ShrinkBudget = { trialsMax: 5_000, millisecondsMax: 60_000 },
): ShrinkResult {
  let current = [...ops];
  let chunkCount = 2;
  let trials = 0;
  const deadline = Date.now() + budget.millisecondsMax;
  while (current.length >= 2) {
    const chunkSize = Math.ceil(current.length / chunkCount);
    let dropped = false;
    for (let start = 0; start < current.length; start += chunkSize) {
      if (trials >= budget.trialsMax || Date.now() > deadline) {
        return { ops: current, trials, minimal: false };
      }
      const candidate = [...current.slice(0, start), ...current.slice(start + chunkSize)];
      trials++;
      if (fails(candidate)) {
        current = candidate;
        chunkCount = Math.max(chunkCount - 1, 2);
        dropped = true;
        break;
      }
    }
    if (dropped) continue;
    if (chunkSize === 1) break;
    chunkCount = Math.min(chunkCount * 2, current.length);
  }
  return { ops: current, trials, minimal: true };
}
