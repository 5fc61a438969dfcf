/**
 * The per-heap secret of the header check word (`headerCheck` in
 * `layout.ts`): drawn from `crypto.getRandomValues` when a heap is made and
 * kept only in its allocator.
 *
 * Internal: `mod.ts` does not export this module. Tests that compare two heaps
 * byte for byte (TS against native, fast against general path) build both
 * under one fixed key with {@linkcode withHeaderKey}; tests that forge
 * headers read a heap's key with `headerKeyOf` (`_inspect.ts`).
 *
 * @module
 */

let fixedKey: number | null = null;

/**
 * A key for a new heap: a random u32, or the fixed one inside {@linkcode withHeaderKey}.
 *
 * @returns The key.
 */
export function drawHeaderKey(): number {
  if (fixedKey !== null) return fixedKey;
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * Runs `make` with every heap it creates keyed with `key`.
 *
 * @param key A u32.
 * @param make Creates the heaps.
 * @returns What `make` returns.
 */
export function withHeaderKey<T>(key: number, make: () => T): T {
  const saved = fixedKey;
  fixedKey = key >>> 0;
  try {
    return make();
  } finally {
    fixedKey = saved;
  }
}
