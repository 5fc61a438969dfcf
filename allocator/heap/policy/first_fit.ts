/**
 * First-fit: the seed's policy. One free list in address order, its head in
 * the control block, scanned from the lowest address for the first block
 * that fits.
 *
 * Worst case: `find` and an `insert` that has no coalescing neighbour walk
 * the whole list, O(n) in the number of free blocks; `remove` and `replace`
 * are O(1). Address order keeps fragmentation low, which makes this the
 * reference behaviour the other policies are compared against.
 *
 * @module
 */

import { corruptionAt } from "../check/corruption.ts";
import { alignmentGap, type BlockWords } from "../block.ts";
import type { ControlBlock } from "../control_block.ts";
import {
  CONTROL_FL_COUNT_OFFSET,
  CONTROL_MAGIC,
  CONTROL_MAGIC_OFFSET,
  CONTROL_POLICY_OFFSET,
  controlBytes,
  controlHeadsOffset,
  GRANULE_BYTES,
  MIN_BLOCK_BYTES,
  POLICY_ID_FIRST_FIT,
} from "../layout.ts";
import { type FreeListPolicy, listedBlockProblem, type PolicyName } from "./policy.ts";

/** The native walks of first-fit, mirroring `find` and the walk of `insert`. */
export interface NativeFirstFit {
  /** `(blockSizeBytes, alignBytes, stepsMax) => block or 0`. */
  find(blockSizeBytes: number, alignBytes: number, stepsMax: number): number;
  /** `(block, after, stepsMax) => the listed block to link after, 0 for the head, -1 if the list does not end`. */
  predecessor(block: number, after: number, stepsMax: number): number;
}

/** First-fit over an address-ordered intrusive list. */
export class FirstFitPolicy implements FreeListPolicy {
  readonly name: PolicyName = "first-fit";
  readonly id = POLICY_ID_FIRST_FIT;
  readonly controlBytes: number = controlBytes(0);

  readonly #blocks: BlockWords;
  readonly #control: ControlBlock;
  readonly #headOffset = controlHeadsOffset(0);
  #count = 0;
  #native: NativeFirstFit | null = null;
  #nativeBlocksMin = 0;

  /**
   * Creates the policy over a control block.
   *
   * @param blocks Access to the managed memory.
   * @param control Where the control block lives.
   * @param inHeap True when an address lies in the heap's block areas: a list
   *   link elsewhere is corruption, found before it is read through.
   */
  constructor(
    blocks: BlockWords,
    control: ControlBlock,
    inHeap: (address: number) => boolean = () => true,
  ) {
    this.#blocks = blocks;
    this.#control = control;
    this.#inHeap = inHeap;
  }

  /** True when an address lies in the heap's block areas (see the constructor). */
  readonly #inHeap: (address: number) => boolean;

  /** A listed block about to be read, or HEAP_CORRUPTION for a forged link (listedBlockProblem). */
  #listed(block: number): number {
    const problem = listedBlockProblem(this.#blocks, this.#inHeap, block);
    if (problem !== null) this.#corrupt(block, problem);
    return block;
  }

  /**
   * Routes the list walks to native code once the list holds at least
   * `blocksMin` blocks, where a walk outweighs the cost of the FFI call.
   */
  useNative(native: NativeFirstFit | null, blocksMin: number): void {
    this.#native = native;
    this.#nativeBlocksMin = blocksMin;
  }

  initControl(): void {
    const control = this.#control;
    control.setWord(CONTROL_MAGIC_OFFSET, CONTROL_MAGIC);
    control.setWord(CONTROL_POLICY_OFFSET, POLICY_ID_FIRST_FIT);
    control.setWord(CONTROL_FL_COUNT_OFFSET, 0);
    control.writeU64(this.#headOffset, 0);
    this.#count = 0;
  }

  #head(): number {
    return this.#control.readU64(this.#headOffset);
  }

  insert(block: number, _sizeBytes: number, after: number): void {
    const blocks = this.#blocks;
    const head = this.#head();
    if (head === 0 || block < head) {
      this.#linkBetween(0, block, head);
      return;
    }
    if (this.#native !== null && this.#count >= this.#nativeBlocksMin) {
      const previous = this.#native.predecessor(block, after, this.#count);
      if (previous < 0) this.#corrupt(after || head, "the free list is longer than its count");
      this.#linkBetween(previous, block, previous === 0 ? head : blocks.next(previous));
      return;
    }
    let current = after !== 0 ? after : head;
    let next = blocks.next(current);
    for (let steps = 0; next !== 0 && next < block; steps++) {
      if (steps > this.#count) this.#corrupt(current, "the free list is longer than its count");
      current = this.#listed(next);
      next = blocks.next(current);
    }
    this.#linkBetween(current, block, next);
  }

  #linkBetween(previous: number, block: number, next: number): void {
    const blocks = this.#blocks;
    blocks.setPrev(block, previous);
    blocks.setNext(block, next);
    if (previous === 0) this.#control.writeU64(this.#headOffset, block);
    else blocks.setNext(previous, block);
    if (next !== 0) blocks.setPrev(next, block);
    this.#count++;
  }

  remove(block: number, _sizeBytes: number): void {
    const blocks = this.#blocks;
    const previous = blocks.prev(block);
    const next = blocks.next(block);
    if (previous === 0) this.#control.writeU64(this.#headOffset, next);
    else blocks.setNext(previous, next);
    if (next !== 0) blocks.setPrev(next, previous);
    this.#count--;
  }

  replace(oldBlock: number, _oldSizeBytes: number, newBlock: number, _newSizeBytes: number): void {
    if (oldBlock === newBlock) return;
    const blocks = this.#blocks;
    const previous = blocks.prev(oldBlock);
    const next = blocks.next(oldBlock);
    blocks.setPrev(newBlock, previous);
    blocks.setNext(newBlock, next);
    if (previous === 0) this.#control.writeU64(this.#headOffset, newBlock);
    else blocks.setNext(previous, newBlock);
    if (next !== 0) blocks.setPrev(next, newBlock);
  }

  find(blockSizeBytes: number, alignBytes: number): number {
    if (this.#native !== null && this.#count >= this.#nativeBlocksMin) {
      return this.#native.find(blockSizeBytes, alignBytes, this.#count);
    }
    const blocks = this.#blocks;
    let block = this.#head();
    for (let steps = 0; block !== 0 && steps < this.#count; steps++) {
      const size = blocks.size(this.#listed(block));
      if (alignBytes <= GRANULE_BYTES) {
        if (size >= blockSizeBytes) return block;
      } else if (alignmentGap(block, alignBytes) + blockSizeBytes <= size) {
        return block;
      }
      block = blocks.next(block);
    }
    return 0;
  }

  listed(limit: number): number[] {
    const result: number[] = [];
    for (let block = this.#head(); block !== 0; block = this.#blocks.next(block)) {
      if (result.length >= limit) this.#corrupt(block, "the free list does not end");
      result.push(this.#listed(block));
    }
    return result;
  }

  findsAnyOf(
    freeBytes: number,
    blockSizeBytes: number,
    alignBytes: number,
    _blocksFreed: number,
  ): boolean {
    // The walk visits every listed block; an alignment gap is 0 or at least
    // MIN_BLOCK_BYTES and below alignBytes + MIN_BLOCK_BYTES.
    const gapBytesMax = alignBytes <= GRANULE_BYTES
      ? 0
      : alignBytes + MIN_BLOCK_BYTES - GRANULE_BYTES;
    return freeBytes >= blockSizeBytes + gapBytesMax;
  }

  largestFree(): number {
    let largest = 0;
    for (const block of this.listed(this.#count + 1)) {
      largest = Math.max(largest, this.#blocks.size(block));
    }
    return largest;
  }

  verify(limit: number): void {
    const blocks = this.#blocks;
    let previous = 0;
    for (const block of this.listed(limit)) {
      if (!blocks.isFree(block)) this.#corrupt(block, "a listed block is not free");
      if (blocks.prev(block) !== previous) this.#corrupt(block, "its back link is wrong");
      if (block <= previous) this.#corrupt(block, "the list is not in address order");
      previous = block;
    }
  }

  #corrupt(address: number, invariant: string): never {
    throw corruptionAt(address, invariant, "free block ");
  }
}
