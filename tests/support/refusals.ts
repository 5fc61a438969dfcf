/**
 * "Refused and unchanged": a refused call must throw an AllocatorError and
 * leave the heap as a user sees it (its stats and every byte under it)
 * exactly as it was. Shared by the adversarial test files.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AllocatorError, type PhysicalAllocator } from "../../mod.ts";

/** The heap as a user sees it: its stats and the bytes under it. */
export interface Picture {
  readonly stats: string;
  readonly words: Int32Array[];
}

/** 32-bit words over `bytes` (its length rounded down to a multiple of 4). */
function wordsOf(bytes: Uint8Array): Int32Array {
  const aligned = bytes.byteOffset - bytes.byteOffset % 4;
  const length = (bytes.byteOffset - aligned + bytes.byteLength) >> 2;
  return new Int32Array(bytes.buffer, aligned, length);
}

export function picture(heap: PhysicalAllocator, views: readonly Uint8Array[]): Picture {
  return { stats: JSON.stringify(heap.stats()), words: views.map((view) => wordsOf(view).slice()) };
}

/** The first difference between the heap now and `before`, or null. */
export function differenceFrom(
  heap: PhysicalAllocator,
  views: readonly Uint8Array[],
  before: Picture,
): string | null {
  if (JSON.stringify(heap.stats()) !== before.stats) return "stats changed";
  for (let v = 0; v < views.length; v++) {
    const now = wordsOf(views[v]);
    const then = before.words[v];
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== then[i]) return `word ${i} of view ${v} changed`;
    }
  }
  return null;
}

/** Runs `call`, which must throw an AllocatorError and change nothing; returns its code. */
export function refusesUnchanged(
  heap: PhysicalAllocator,
  views: readonly Uint8Array[],
  what: string,
  call: () => unknown,
): string {
  const before = picture(heap, views);
  let thrown: unknown = null;
  try {
    call();
  } catch (error) {
    thrown = error;
  }
  assert.ok(thrown !== null, `${what}: expected a throw`);
  assert.ok(thrown instanceof AllocatorError, `${what}: expected an AllocatorError, got ${thrown}`);
  const difference = differenceFrom(heap, views, before);
  assert.equal(difference, null, `${what}: threw ${thrown.code} but ${difference}`);
  return thrown.code;
}
