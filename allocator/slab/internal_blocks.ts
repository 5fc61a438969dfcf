/**
 * The blocks the page-frame and slab layers took from the block heap for
 * themselves (chunks, slab descriptors): a set of payload addresses that
 * every block free and realloc of a layered heap must ask about, since
 * `alloc` never handed those blocks out.
 *
 * A `Set` lookup on every block free costs a hash of a number and a probe; a
 * counting filter in front of it (how many members fall into each of 2^14
 * buckets of the address bits) answers "not a member" for most addresses
 * with one typed-array load, and only addresses whose bucket holds a member
 * are looked up in the set. The filter never answers for the set: a member
 * is always looked up, so the answer is exact.
 *
 * @module
 */

/** log2 of the filter's buckets. */
const BUCKET_BITS = 14;
const BUCKET_MASK = (1 << BUCKET_BITS) - 1;

/** The bucket of `address`: bits 3 and up (payloads are 8-byte aligned), modulo 2^32 for any address. */
function bucketOf(address: number): number {
  return (address >>> 3) & BUCKET_MASK;
}

/** A set of block addresses with a counting filter in front. */
export class InternalBlocks {
  readonly #members = new Set<number>();
  /** Members per bucket (a bucket holds at most every member: 2^32 - 1 fits). */
  readonly #counts = new Uint32Array(1 << BUCKET_BITS);

  /**
   * Adds a block.
   *
   * @param address The block's payload address.
   */
  add(address: number): void {
    if (this.#members.has(address)) return;
    this.#members.add(address);
    this.#counts[bucketOf(address)]++;
  }

  /**
   * Removes a block.
   *
   * @param address The block's payload address.
   */
  delete(address: number): void {
    if (!this.#members.delete(address)) return;
    this.#counts[bucketOf(address)]--;
  }

  /**
   * True when `address` is a member.
   *
   * @param address Any value.
   * @returns Whether the layers took the block at `address`.
   */
  has(address: number): boolean {
    // Only numbers are hashed: `>>>` would run a user object's valueOf, or throw for a Symbol or a bigint.
    return typeof address === "number" && this.#counts[bucketOf(address)] !== 0 &&
      this.#members.has(address);
  }

  /** Members (check() compares them with the chunks and descriptors). */
  get size(): number {
    return this.#members.size;
  }
}
