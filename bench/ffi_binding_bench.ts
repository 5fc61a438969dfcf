/**
 * Which Deno FFI binding calls a C allocator fastest: the question behind
 * `tools/trace/target_ffi.ts`. Each bench runs 1,000 `malloc`+`free` pairs
 * of 16 to 79 bytes, on glibc and (where installed) mimalloc, in one run:
 *
 *   deno bench --allow-ffi --allow-read --allow-env bench/ffi_binding_bench.ts
 *
 * 1. `"usize"` parameters and results, values kept as BigInt (sizes
 *    converted once, before timing): what the replay targets use;
 * 2. `"usize"`, the result converted with `Number()` and back with `BigInt()`;
 * 3. `"usize"` parameters passed as numbers (Deno converts each at run time);
 * 4. `"pointer"` parameters and results (pointer objects).
 *
 * Every variant mallocs into the same warm process heap, so they differ only
 * in the binding, and every allocator runs its own compiled copy of each
 * loop, so one allocator's calls do not make another's polymorphic. A last group replays `bench/traces/git.rep` through the
 * replay targets with each pointer binding: `FFI_BINDING` in
 * `tools/trace/target_ffi.ts` must be the faster there.
 *
 * @module
 */

import { loadTraces } from "../tools/trace/main.ts";
import { freshCopy } from "../tools/trace/fresh_copy.ts";
import {
  FFI_BINDING,
  glibcTarget,
  libraryOpens,
  mimallocTarget,
} from "../tools/trace/target_ffi.ts";

const PAIRS = 1000;
const SIZES_BYTES = Array.from({ length: PAIRS }, (_, i) => 16 + (i * 37) % 64);
const SIZES_BIG = SIZES_BYTES.map((size) => BigInt(size));

/** The two bindings of one allocator: usize values and pointer objects. */
function open(path: string, names: readonly [string, string]) {
  const [malloc, free] = names;
  const usize = Deno.dlopen(
    path,
    {
      malloc: { name: malloc, parameters: ["usize"], result: "usize" },
      free: { name: free, parameters: ["usize"], result: "void" },
    } as const,
  ).symbols;
  const pointer = Deno.dlopen(
    path,
    {
      malloc: { name: malloc, parameters: ["usize"], result: "pointer" },
      free: { name: free, parameters: ["pointer"], result: "void" },
    } as const,
  ).symbols;
  return { usize, pointer };
}

const allocators: [string, string, readonly [string, string]][] = [
  ["glibc", "libc.so.6", ["malloc", "free"]],
  ["mimalloc", "libmimalloc.so.2", ["mi_malloc", "mi_free"]],
];

/** The symbols and slots one variant works on. */
interface Bench {
  readonly usize: ReturnType<typeof open>["usize"];
  readonly pointer: ReturnType<typeof open>["pointer"];
  readonly bigSlots: bigint[];
  readonly numberSlots: number[];
  readonly pointerSlots: Deno.PointerValue[];
}

const variants: Record<string, (b: Bench) => void> = {
  "usize, BigInt kept": (b) => {
    for (let i = 0; i < PAIRS; i++) b.bigSlots[i] = b.usize.malloc(SIZES_BIG[i]);
    for (let i = 0; i < PAIRS; i++) b.usize.free(b.bigSlots[i]);
  },
  "usize, Number() and BigInt() per call": (b) => {
    for (let i = 0; i < PAIRS; i++) b.numberSlots[i] = Number(b.usize.malloc(SIZES_BIG[i]));
    for (let i = 0; i < PAIRS; i++) b.usize.free(BigInt(b.numberSlots[i]));
  },
  "usize, numbers passed": (b) => {
    // Deno accepts numbers for "usize" parameters at run time; its types ask for BigInt.
    const malloc = b.usize.malloc as unknown as (size: number) => bigint;
    for (let i = 0; i < PAIRS; i++) b.bigSlots[i] = malloc(SIZES_BYTES[i]);
    for (let i = 0; i < PAIRS; i++) b.usize.free(b.bigSlots[i]);
  },
  "pointer objects": (b) => {
    for (let i = 0; i < PAIRS; i++) b.pointerSlots[i] = b.pointer.malloc(SIZES_BIG[i]);
    for (let i = 0; i < PAIRS; i++) b.pointer.free(b.pointerSlots[i]);
  },
};

for (const [name, path, names] of allocators) {
  if (!libraryOpens(path)) {
    console.warn(`${path} not installed: the ${name} benches do not run`);
    continue;
  }
  const bench: Bench = {
    ...open(path, names),
    bigSlots: new Array(PAIRS).fill(0n),
    numberSlots: new Array(PAIRS).fill(0),
    pointerSlots: new Array(PAIRS).fill(null),
  };
  const group = `${name}: 1000 malloc+free pairs`;
  for (const [variant, run] of Object.entries(variants)) {
    // Each allocator gets its own copy of every loop (see tools/trace/fresh_copy.ts).
    const copy = freshCopy(run, { PAIRS, SIZES_BIG, SIZES_BYTES });
    Deno.bench(
      `${name}: ${variant}`,
      { group, baseline: variant === "usize, BigInt kept" },
      () => copy(bench),
    );
  }
}

// The same question on a real trace, through the replay targets themselves:
// each binding replays bench/traces/git.rep on one warm heap per repetition.
const trace = (await loadTraces([new URL("./traces/git.rep", import.meta.url).pathname]))[0];
for (const [name, make] of [["glibc", glibcTarget], ["mimalloc", mimallocTarget]] as const) {
  if (!libraryOpens(name === "glibc" ? "libc.so.6" : "libmimalloc.so.2")) continue;
  for (const binding of ["pointer", "usize"] as const) {
    const target = make({ binding });
    Deno.bench(`${name}: git.rep replay, ${binding} binding`, {
      group: `${name}: git.rep replay (${trace.opCount} operations)`,
      baseline: binding === FFI_BINDING,
    }, () => {
      const heap = target.create(trace, 0);
      heap.run(trace);
      heap.close();
    });
  }
}
