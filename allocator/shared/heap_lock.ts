/**
 * A mutex in shared memory, owned by a Worker slot.
 *
 * The owner word holds `slot | generation << 8`, 0 when free: the slot names
 * the owner in a timeout report, and the generation (the taker's own count
 * of acquisitions) changes at every hold, so a waiter can tell a lock that
 * keeps changing hands (progress: it waits on) from one hold that lasts past
 * the timeout (a stuck or dead owner: it throws LockTimeoutError). The lock
 * is never taken from its owner: the operation it guards may be half-done.
 *
 * Taking a free lock is one `Atomics.compareExchange`; releasing it is one
 * `Atomics.store` and one load of the sleepers word, and `Atomics.notify`
 * only when someone sleeps. A waiter spins briefly first (critical sections
 * are short), then sleeps in `Atomics.wait` slices.
 *
 * @module
 */

import { LockTimeoutError } from "../errors.ts";

/** Spins on a held lock before the first sleep. */
const SPINS_BEFORE_SLEEP = 200;
/** The longest single sleep: a lost wake-up costs at most this. */
const SLEEP_SLICE_MS = 20;
/** Owner word bits of the slot id. */
const SLOT_MASK = 0xff;
/** Generations wrap within 23 bits so the owner word stays a positive i32. */
const GENERATION_MASK = 0x7fffff;

/** A lock word pair (owner, sleepers) in a shared Int32Array. */
export class HeapLock {
  /** The lock's name in error messages ("heap", "class 3"). */
  readonly name: string;
  readonly #words: Int32Array;
  readonly #owner: number;
  readonly #sleepers: number;
  readonly #slot: number;
  readonly #timeoutMs: number;
  #generation = 0;

  /**
   * Wraps the lock at word `ownerIndex` (its sleepers word follows).
   *
   * @param words The shared words.
   * @param ownerIndex Word index of the owner word.
   * @param slot This Worker's slot id, 1 to 255.
   * @param timeoutMs How long one hold may last before a waiter reports it.
   * @param name The lock's name for messages.
   */
  constructor(
    words: Int32Array,
    ownerIndex: number,
    slot: number,
    timeoutMs: number,
    name: string,
  ) {
    this.#words = words;
    this.#owner = ownerIndex;
    this.#sleepers = ownerIndex + 1;
    this.#slot = slot;
    this.#timeoutMs = timeoutMs;
    this.name = name;
  }

  /**
   * Takes the lock, waiting while others hold it.
   *
   * @throws {LockTimeoutError} If one hold by another slot lasts longer than the timeout.
   */
  acquire(): void {
    const mine = this.#slot | ((++this.#generation & GENERATION_MASK) << 8);
    if (Atomics.compareExchange(this.#words, this.#owner, 0, mine) === 0) return;
    this.#acquireContended(mine);
  }

  /** Releases the lock and wakes one sleeper, if any. */
  release(): void {
    Atomics.store(this.#words, this.#owner, 0);
    if (Atomics.load(this.#words, this.#sleepers) !== 0) {
      Atomics.notify(this.#words, this.#owner, 1);
    }
  }

  #acquireContended(mine: number): void {
    const words = this.#words;
    const owner = this.#owner;
    for (let spin = 0; spin < SPINS_BEFORE_SLEEP; spin++) {
      if (
        Atomics.load(words, owner) === 0 && Atomics.compareExchange(words, owner, 0, mine) === 0
      ) return;
    }
    Atomics.add(words, this.#sleepers, 1);
    try {
      let seen = Atomics.load(words, owner);
      let holdStart = performance.now();
      // Bounded by time: every pass either takes the lock, sees a new hold
      // (progress) or moves towards the deadline of the current hold.
      for (;;) {
        if (seen === 0) {
          seen = Atomics.compareExchange(words, owner, 0, mine);
          if (seen === 0) return;
          holdStart = performance.now();
          continue;
        }
        const waitedMs = performance.now() - holdStart;
        if (waitedMs >= this.#timeoutMs) throw this.#timeout(seen, waitedMs);
        Atomics.wait(words, owner, seen, Math.min(SLEEP_SLICE_MS, this.#timeoutMs - waitedMs));
        const now = Atomics.load(words, owner);
        if (now !== seen) holdStart = performance.now();
        seen = now;
      }
    } finally {
      Atomics.sub(words, this.#sleepers, 1);
    }
  }

  #timeout(ownerWord: number, waitedMs: number): LockTimeoutError {
    const ownerSlot = ownerWord & SLOT_MASK;
    return new LockTimeoutError(
      `Cannot take the ${this.name} lock: slot ${ownerSlot} has held it for ${
        Math.round(waitedMs)
      } ms (its Worker is stuck or ended inside an operation; the heap may be half-edited)`,
      ownerSlot,
    );
  }
}
