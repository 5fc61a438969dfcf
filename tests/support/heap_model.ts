/**
 * A model of live allocations that checks an allocator after every step:
 * no overlap, payloads inside usable regions and aligned, payload bytes
 * intact, `check()` passing, the stats identity holding, and no byte outside
 * the block areas and control block changed (tests/support/outside_bytes.ts).
 */
import assert from "#assert";
import type { PhysicalAllocator } from "../../mod.ts";
import { OutsideBytes } from "./outside_bytes.ts";

/** `verifyAll()` compares the bytes outside the block areas every this many calls: it costs O(gaps). */
const OUTSIDE_CHECK_EVERY = 64;

/** One live allocation the model tracks. */
export interface LiveBlock {
  readonly address: number;
  readonly sizeBytes: number;
  readonly alignBytes: number;
  readonly fill: number;
}

/** Tracks live blocks and verifies an allocator against them. */
export class HeapModel {
  readonly live = new Map<number, LiveBlock>();
  /** Sum of the live payload sizes. */
  liveBytes = 0;
  readonly #heap: PhysicalAllocator;
  readonly #regions: readonly { start: number; end: number }[];
  readonly #outside: OutsideBytes;
  #verifications = 0;

  /** Creates a model of `heap` (made just now), whose regions are `regions`. */
  constructor(heap: PhysicalAllocator, regions: readonly { start: number; end: number }[]) {
    this.#heap = heap;
    this.#regions = regions;
    this.#outside = new OutsideBytes(heap);
  }

  /** Records an allocation and fills its payload with a pattern derived from `fill`. */
  added(address: number, sizeBytes: number, alignBytes: number, fill: number): void {
    assert.ok(address > 0);
    assert.equal(address % alignBytes, 0, `address ${address} not aligned to ${alignBytes}`);
    const region = this.#regions.find((r) => r.start <= address && address + sizeBytes <= r.end);
    assert.ok(region, `payload ${address}+${sizeBytes} lies outside every region`);
    assert.ok(!this.live.has(address), `address ${address} handed out twice`);
    for (const other of this.live.values()) {
      if (address < other.address + other.sizeBytes && other.address < address + sizeBytes) {
        assert.fail(`payload ${address}+${sizeBytes} overlaps live payload ${other.address}`);
      }
    }
    this.liveBytes += sizeBytes;
    this.live.set(address, { address, sizeBytes, alignBytes, fill });
    this.#heap.bytes(address).fill(fill & 0xff);
  }

  /** Verifies a payload's pattern (its first `lengthBytes`) and forgets the block. */
  removed(address: number, lengthBytes?: number): LiveBlock {
    const block = this.live.get(address);
    assert.ok(block, `address ${address} is not live in the model`);
    this.verifyBytes(block, lengthBytes ?? block.sizeBytes);
    this.forget(address);
    return block;
  }

  /** Forgets a live block without checking its bytes (after a realloc moved them). */
  forget(address: number): void {
    const block = this.live.get(address);
    assert.ok(block, `address ${address} is not live in the model`);
    this.liveBytes -= block.sizeBytes;
    this.live.delete(address);
  }

  /** Asserts the first `lengthBytes` of a payload still hold their pattern. */
  verifyBytes(block: LiveBlock, lengthBytes: number): void {
    const view = this.#heap.bytes(block.address, Math.min(lengthBytes, block.sizeBytes));
    const expected = block.fill & 0xff;
    for (let i = 0; i < view.length; i++) {
      if (view[i] !== expected) {
        assert.fail(`payload ${block.address} byte ${i} is ${view[i]}, expected ${expected}`);
      }
    }
  }

  /** Everything the allocator can prove plus the model's totals (overlap is checked at each add). */
  verifyAll(): void {
    this.#heap.check();
    const s = this.#heap.stats();
    assert.equal(s.totalBytes, s.freeBytes + s.usedBytes + s.overheadBytes + s.skippedBytes);
    assert.equal(s.usedBlocks, this.live.size);
    assert.equal(s.usedBytes, this.liveBytes);
    // A stray write outside the block areas stays there, so a sparser check still catches it.
    if (this.#verifications++ % OUTSIDE_CHECK_EVERY === 0) this.#outside.verify();
  }

  /** Asserts no byte outside the block areas and control block changed (also every OUTSIDE_CHECK_EVERY verifyAll). */
  verifyOutside(): void {
    this.#outside.verify();
  }
}
