/**
 * The fuzzer's operation stream: a pure function of the seed, independent of
 * what the heap answers, so the same stream drives every policy and path and
 * a failing prefix replays exactly (`--seed S --ops I+1`).
 *
 * Operations refer to live allocations by a random `pick` (the allocation at
 * `pick % liveCount` of the runner's live list), never by address, so any
 * sub-list of a stream is still a valid stream: that is what lets the
 * shrinker drop operations freely.
 *
 * ```text
 * l LAYOUT            start fresh heaps over region layout LAYOUT (see REGION_LAYOUTS)
 * a SIZE ALIGN        tryAlloc(SIZE, ALIGN); ALIGN 0 means the allocator's default
 * f PICK              free a live allocation
 * r PICK SIZE         realloc a live allocation
 * x SIZE PICK         exhaust: tryAlloc(SIZE) until it fails, then free about 90% of all live
 *                     allocations, chosen by a generator seeded with PICK
 * ```
 *
 * @module
 */

import { Random } from "../../tests/support/random.ts";

/** Operation kind: start fresh heaps over a region layout. */
export const OP_LAYOUT = 0;
/** Operation kind: allocate. */
export const OP_ALLOC = 1;
/** Operation kind: free. */
export const OP_FREE = 2;
/** Operation kind: realloc. */
export const OP_REALLOC = 3;
/** Operation kind: allocate until memory runs out, then free most. */
export const OP_EXHAUST = 4;

/** One operation of a stream. */
export interface FuzzOp {
  /** One of the `OP_*` kinds. */
  readonly kind: number;
  /** Bytes for alloc, realloc and exhaust; the layout index for a layout op; else 0. */
  readonly size: number;
  /** The alignment of an alloc (0: the allocator's default); else 0. */
  readonly align: number;
  /** Which live allocation a free or realloc takes; the seed of an exhaust's frees. */
  readonly pick: number;
}

/** An address range of a region layout. */
export interface FuzzRange {
  /** First address. */
  readonly start: number;
  /** Length in bytes. */
  readonly length: number;
}

/**
 * The region layouts a stream cycles through, each in ascending address order: one large region, odd bases
 * with a region too small for a block, many small regions, a thousand tiny
 * ones, a mix, and one 4 MiB region (the mix's 1 MiB region and this one are
 * served by the page-frame and slab layers too). Small enough that exhaustion
 * phases stay quick.
 */
export const REGION_LAYOUTS: readonly (readonly FuzzRange[])[] = [
  [{ start: 0x1000, length: 512 * 1024 }],
  [{ start: 0x1003, length: 30 }, { start: 0x2005, length: 50_001 }, {
    start: 0x40000,
    length: 300_000,
  }],
  Array.from({ length: 256 }, (_, i) => ({ start: 0x10000 + i * 4096, length: 64 + i * 15 })),
  Array.from({ length: 1000 }, (_, i) => ({ start: 0x10000 + i * 256, length: 40 + (i % 7) * 24 })),
  [
    ...Array.from({ length: 64 }, (_, i) => ({ start: 0x2000 + i * 512, length: 100 + i * 6 })),
    { start: 0x100000, length: 1 << 20 },
    { start: 0x300000, length: 65_536 + 13 },
  ],
  // Large enough for the page-frame and slab layers to serve most requests.
  [{ start: 0x1000, length: 4 << 20 }],
];

/** Stream operations between two layout changes, at least and at most. */
const EPOCH_OPS_MIN = 2_000;
const EPOCH_OPS_MAX = 30_000;

/**
 * A payload size from one of several distributions: small uniform,
 * power-law (log-uniform to 1 MiB), page multiples, and huge (past any
 * layout's memory, so the allocation must fail cleanly).
 */
export function drawSize(random: Random): number {
  const roll = random.next();
  if (roll < 0.55) return random.int(1, 256);
  if (roll < 0.85) return Math.max(1, Math.floor(2 ** (random.next() * 20)));
  if (roll < 0.97) return 4096 * random.int(1, 16);
  return random.int(1 << 21, 2 ** 40);
}

/** An alignment: mostly the default, otherwise a power of two up to 1 MiB. */
export function drawAlign(random: Random): number {
  const roll = random.next();
  if (roll < 0.7) return 0;
  if (roll < 0.95) return 2 ** random.int(0, 12);
  return 2 ** random.int(13, 20);
}

/** Generates the operation stream of a seed, one operation at a time. */
export class OpStream {
  readonly #random: Random;
  #index = 0;
  #epochEnd = 0;
  #layoutCount = 0;

  /** Creates the stream of `seed`. */
  constructor(seed: number) {
    this.#random = new Random(seed);
  }

  /** The next operation. */
  next(): FuzzOp {
    const random = this.#random;
    const index = this.#index++;
    if (index === this.#epochEnd) {
      this.#epochEnd = index + random.int(EPOCH_OPS_MIN, EPOCH_OPS_MAX);
      // The first epoch takes layout 0, later ones a random layout.
      const layout = this.#layoutCount++ === 0 ? 0 : random.int(0, REGION_LAYOUTS.length - 1);
      return { kind: OP_LAYOUT, size: layout, align: 0, pick: 0 };
    }
    const roll = random.next();
    const pick = Math.floor(random.next() * 4294967296);
    if (roll < 0.0004) return { kind: OP_EXHAUST, size: random.int(1, 512), align: 0, pick };
    if (roll < 0.5) {
      return { kind: OP_ALLOC, size: drawSize(random), align: drawAlign(random), pick: 0 };
    }
    if (roll < 0.85) return { kind: OP_FREE, size: 0, align: 0, pick };
    return { kind: OP_REALLOC, size: drawSize(random), align: 0, pick };
  }
}

/**
 * The first `count` operations of a seed's stream.
 *
 * @param seed The stream's seed.
 * @param count How many operations.
 * @returns The operations, in order.
 *
 * @example The same seed gives the same stream, starting with a layout
 * ```ts
 * import assert from "node:assert/strict";
 * import { OP_LAYOUT, streamOps } from "./stream.ts";
 *
 * assert.deepEqual(streamOps(1, 100), streamOps(1, 100));
 * assert.equal(streamOps(1, 1)[0].kind, OP_LAYOUT);
 * ```
 */
export function streamOps(seed: number, count: number): FuzzOp[] {
  const stream = new OpStream(seed);
  return Array.from({ length: count }, () => stream.next());
}

/**
 * The operations a failure at `failedIndex` depends on: from the layout
 * operation that started its heaps up to and including the failing one.
 * Earlier operations ran on heaps that were thrown away.
 */
export function epochOf(seed: number, failedIndex: number): FuzzOp[] {
  const ops = streamOps(seed, failedIndex + 1);
  let start = failedIndex;
  while (start > 0 && ops[start].kind !== OP_LAYOUT) start--;
  return ops.slice(start);
}

/**
 * One operation as a line of text (the format in the module doc).
 *
 * @param op The operation.
 * @returns Its line, which {@linkcode parseOps} reads back.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatOp, OP_REALLOC } from "./stream.ts";
 *
 * assert.equal(formatOp({ kind: OP_REALLOC, size: 640, align: 0, pick: 7 }), "r 7 640");
 * ```
 */
export function formatOp(op: FuzzOp): string {
  switch (op.kind) {
    case OP_LAYOUT:
      return `l ${op.size}`;
    case OP_ALLOC:
      return `a ${op.size} ${op.align}`;
    case OP_FREE:
      return `f ${op.pick}`;
    case OP_REALLOC:
      return `r ${op.pick} ${op.size}`;
    default:
      return `x ${op.size} ${op.pick}`;
  }
}

/**
 * Parses operation lines written by {@linkcode formatOp} (blank lines and
 * `#` comments skipped), for replaying a shrunk list.
 *
 * @param text The lines.
 * @returns The operations.
 * @throws {Error} If a line is malformed, naming it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatOp, parseOps, streamOps } from "./stream.ts";
 *
 * const ops = streamOps(9, 50);
 * assert.deepEqual(parseOps(ops.map(formatOp).join("\n")), ops);
 * assert.throws(() => parseOps("a 1"), /line 1/);
 * ```
 */
export function parseOps(text: string): FuzzOp[] {
  const ops: FuzzOp[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const [kind, ...fields] = line.split(/\s+/);
    const numbers = fields.map(Number);
    const arity: Record<string, number> = { l: 1, a: 2, f: 1, r: 2, x: 2 };
    if (
      !(kind in arity) || numbers.length !== arity[kind] || !numbers.every(Number.isSafeInteger)
    ) {
      throw new Error(`Cannot parse operation line ${index + 1}: '${line}'`);
    }
    const [first, second] = numbers;
    if (kind === "l") ops.push({ kind: OP_LAYOUT, size: first, align: 0, pick: 0 });
    if (kind === "a") ops.push({ kind: OP_ALLOC, size: first, align: second, pick: 0 });
    if (kind === "f") ops.push({ kind: OP_FREE, size: 0, align: 0, pick: first });
    if (kind === "r") ops.push({ kind: OP_REALLOC, size: second, align: 0, pick: first });
    if (kind === "x") ops.push({ kind: OP_EXHAUST, size: first, align: 0, pick: second });
  });
  return ops;
}
