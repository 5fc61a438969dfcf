/**
 * Which bytes the open allocators of this process manage, so that a second
 * allocator over the same bytes is refused instead of silently rewriting a
 * live heap under the first (see the `reinitialize` option).
 *
 * A claim is the byte ranges of a heap's regions in their buffer. Claims are
 * kept per buffer in a WeakMap (a buffer nobody holds takes its claims with
 * it), hold their allocator weakly (an allocator dropped without `close()`
 * is not kept alive by its claim) and are released by `close()`.
 *
 * @module
 */

import { MemoryInUseError } from "../errors.ts";
import { hex, type MemoryRegion } from "./physical_memory.ts";

/** A heap's hold on its memory. */
export interface MemoryClaim {
  /** Gives the bytes back; later allocators may take them. */
  release(): void;
}

/** One byte range of a buffer and the claim it belongs to. */
interface ClaimedRange {
  readonly startByte: number;
  readonly endByte: number;
  readonly base: number;
  readonly claim: LiveClaim;
}

interface LiveClaim extends MemoryClaim {
  /** Closes the allocator that holds the claim (reinitialize took its memory). */
  retire(): void;
  /** False once the allocator is gone (collected) or released its claim. */
  live(): boolean;
}

const claimsByBuffer = new WeakMap<ArrayBufferLike, ClaimedRange[]>();

/**
 * Claims the bytes of `regions` for a new heap.
 *
 * @param regions The heap's regions (all viewing one buffer, already checked).
 * @param reinitialize True to take bytes other allocators hold: they are retired (closed).
 * @param owner The new heap's allocator, held weakly.
 * @param retire Closes `owner` if a later `reinitialize` takes its bytes; must not capture it.
 * @returns The claim; `release()` it when the allocator closes.
 * @throws {MemoryInUseError} If another open allocator holds any of the bytes and
 *   `reinitialize` is false.
 */
export function claimMemory<T extends object>(
  regions: readonly MemoryRegion[],
  reinitialize: boolean,
  owner: T,
  retire: (owner: T) => void,
): MemoryClaim {
  const buffer = regions[0].bytes.buffer;
  const held = (claimsByBuffer.get(buffer) ?? []).filter((range) => range.claim.live());
  const overlapping = held.filter((range) =>
    regions.some((region) =>
      region.bytes.byteOffset < range.endByte &&
      range.startByte < region.bytes.byteOffset + region.bytes.byteLength
    )
  );
  if (overlapping.length > 0 && !reinitialize) {
    throw new MemoryInUseError(
      `Cannot create allocator over memory at ${
        hex(regions[0].base)
      }: an open allocator manages the bytes of its region at ${
        hex(overlapping[0].base)
      } (close() it, or pass reinitialize: true)`,
    );
  }
  for (const range of overlapping) {
    range.claim.retire();
    range.claim.release();
  }
  const ownerRef = new WeakRef(owner);
  let released = false;
  const claim: LiveClaim = {
    retire() {
      const current = ownerRef.deref();
      if (current !== undefined) retire(current);
    },
    live: () => !released && ownerRef.deref() !== undefined,
    release() {
      released = true;
      const ranges = claimsByBuffer.get(buffer);
      if (ranges === undefined) return;
      const kept = ranges.filter((range) => range.claim !== claim);
      if (kept.length === 0) claimsByBuffer.delete(buffer);
      else claimsByBuffer.set(buffer, kept);
    },
  };
  const kept = held.filter((range) => !overlapping.includes(range));
  for (const region of regions) {
    kept.push({
      startByte: region.bytes.byteOffset,
      endByte: region.bytes.byteOffset + region.bytes.byteLength,
      base: region.base,
      claim,
    });
  }
  claimsByBuffer.set(buffer, kept);
  return claim;
}
