/**
 * Decoding a parsed `.rep` trace into the replay form: every real-trace
 * quirk resolved into one of four plain operations, with the statistics a
 * replay needs (peak live bytes, most live blocks) computed once.
 *
 * | In the trace                  | Replayed as              |
 * |-------------------------------|--------------------------|
 * | `a id size` (size may be 0)   | {@linkcode REPLAY_ALLOC} |
 * | `f id`                        | {@linkcode REPLAY_FREE}  |
 * | `f -1` (free of NULL)         | {@linkcode REPLAY_NOOP}  |
 * | `r id size`, id live          | {@linkcode REPLAY_REALLOC} |
 * | `r id size`, id not live      | {@linkcode REPLAY_ALLOC} (realloc of NULL is malloc) |
 * | `r id 0`, id live             | {@linkcode REPLAY_FREE}  (glibc's realloc to 0 frees) |
 *
 * A size of 0 stays 0 here; replays ask every allocator for 1 byte instead,
 * because C's `malloc(0)` returns a unique pointer that must be freed.
 *
 * @module
 */

import { TraceFormatError } from "../../allocator/errors.ts";
import { NULL_ID, OP_ALLOC, OP_FREE, type RepTrace } from "./rep_format.ts";

/** Replay operation: allocate `sizesBytes[i]` bytes for id `ids[i]`. */
export const REPLAY_ALLOC = 0;
/** Replay operation: free the block of id `ids[i]`. */
export const REPLAY_FREE = 1;
/** Replay operation: resize the block of id `ids[i]` to `sizesBytes[i]` bytes. */
export const REPLAY_REALLOC = 2;
/** Replay operation: nothing (a free of NULL); counted as an operation. */
export const REPLAY_NOOP = 3;

/** A trace ready to replay: operations in typed arrays, quirks resolved. */
export interface DecodedTrace {
  /** A name for tables (usually the file's base name without `.rep`). */
  readonly name: string;
  /** The number of operations, including no-ops. */
  readonly opCount: number;
  /** Per operation: one of the `REPLAY_*` kinds. */
  readonly kinds: Uint8Array;
  /** Per operation: the block id, an index below {@linkcode DecodedTrace.slotCount}. */
  readonly ids: Int32Array;
  /** Per operation: the requested size in bytes (0 for frees and no-ops). */
  readonly sizesBytes: Float64Array;
  /** One more than the largest id: the size of a replay's id-to-address table. */
  readonly slotCount: number;
  /** The most payload bytes live at once. */
  readonly peakLiveBytes: number;
  /** The most blocks live at once. */
  readonly peakLiveBlocks: number;
  /** The largest single request in bytes. */
  readonly largestRequestBytes: number;
  /** The trace header's suggested heap size in bytes. */
  readonly suggestedHeapBytes: number;
}

/**
 * Resolves a parsed trace into replay operations (see the module table).
 *
 * @param trace The parsed trace.
 * @param name The name to report it under.
 * @returns The decoded trace.
 * @throws {TraceFormatError} If an `a` names a live id, or an `f` names an id that is not
 *   live, naming the line.
 *
 * @example Quirks become plain operations
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRep } from "./rep_format.ts";
 * import { decodeTrace, REPLAY_ALLOC, REPLAY_FREE, REPLAY_NOOP } from "./decode.ts";
 *
 * const decoded = decodeTrace(parseRep("0\n1\n3\n1\nr 0 8\nf -1\nr 0 0\n"), "quirks");
 * assert.deepEqual([...decoded.kinds], [REPLAY_ALLOC, REPLAY_NOOP, REPLAY_FREE]);
 * assert.equal(decoded.peakLiveBytes, 8);
 * ```
 */
export function decodeTrace(trace: RepTrace, name: string): DecodedTrace {
  const opCount = trace.opCount;
  const kinds = new Uint8Array(opCount);
  const ids = new Int32Array(opCount);
  const sizesBytes = new Float64Array(opCount);
  let slotCount = 0;
  for (let i = 0; i < opCount; i++) slotCount = Math.max(slotCount, trace.ids[i] + 1);
  // liveSizes[id] is the live block's size, or -1 when the id is not live.
  const liveSizes = new Float64Array(slotCount).fill(-1);
  let liveBytes = 0, liveBlocks = 0, peakLiveBytes = 0, peakLiveBlocks = 0, largest = 0;
  for (let i = 0; i < opCount; i++) {
    const id = trace.ids[i];
    const size = trace.sizesBytes[i];
    const kind = trace.kinds[i];
    const live = id >= 0 && liveSizes[id] >= 0;
    ids[i] = id < 0 ? 0 : id;
    if (kind === OP_FREE || (kind !== OP_ALLOC && live && size === 0)) {
      if (id === NULL_ID) {
        kinds[i] = REPLAY_NOOP;
        continue;
      }
      if (!live) throw decodeError(trace, i, `'f ${id}' frees an id that is not live`);
      kinds[i] = REPLAY_FREE;
      liveBytes -= liveSizes[id];
      liveBlocks--;
      liveSizes[id] = -1;
      continue;
    }
    if (kind === OP_ALLOC && live) {
      throw decodeError(trace, i, `'a ${id}' allocates an id that is already live`);
    }
    kinds[i] = live ? REPLAY_REALLOC : REPLAY_ALLOC;
    sizesBytes[i] = size;
    liveBytes += size - (live ? liveSizes[id] : 0);
    if (!live) liveBlocks++;
    liveSizes[id] = size;
    if (liveBytes > peakLiveBytes) peakLiveBytes = liveBytes;
    if (liveBlocks > peakLiveBlocks) peakLiveBlocks = liveBlocks;
    if (size > largest) largest = size;
  }
  return {
    name,
    opCount,
    kinds,
    ids,
    sizesBytes,
    slotCount,
    peakLiveBytes,
    peakLiveBlocks,
    largestRequestBytes: largest,
    suggestedHeapBytes: trace.suggestedHeapBytes,
  };
}

function decodeError(trace: RepTrace, opIndex: number, detail: string): TraceFormatError {
  const line = trace.lineNumbers[opIndex];
  const where = line > 0 ? `line ${line}` : `operation ${opIndex}`;
  return new TraceFormatError(`Cannot decode trace ${where}: ${detail}`);
}
