/**
 * The bad-input catalog: every kind of bad call the public API, the memory
 * maps, the trace format and the command lines can get, each asserting the
 * error class, its stable `code`, a message naming the offending value, and
 * that nothing changed (for the allocator: `check()` passes and `snapshot()`
 * — stats, blocks and live payload bytes — and the raw memory are identical).
 *
 * Allocator cases run against both policies, on the TS path, the native
 * path (when the library is built) and in debug mode. `CATALOG_SIZE` is the number of
 * distinct bad inputs; the last test keeps it honest.
 */
import assert from "#assert";
import {
  type AllocatorError,
  bufferMemory,
  DoubleFreeError,
  InvalidAddressError,
  InvalidAlignmentError,
  InvalidFreeError,
  InvalidMemoryError,
  InvalidOptionError,
  InvalidSizeError,
  MemoryDetachedError,
  MemoryInUseError,
  MemoryMapError,
  OutOfMemoryError,
  PhysicalAllocator,
  type PhysicalMemory,
  POLICY_NAMES,
  type PolicyName,
} from "../mod.ts";
import { AllocatorClosedError, TraceFormatError } from "../allocator/errors.ts";
import { describeValue, hex } from "../allocator/memory/physical_memory.ts";
import type { MemoryMapEntry } from "../allocator/memory_map/entry.ts";
import { MemoryMap } from "../allocator/memory_map/memory_map.ts";
import { normalizeMemoryMap } from "../allocator/memory_map/normalize.ts";
import {
  parseAddress,
  parseE820,
  parseMemoryMapJson,
  parseSysfsDump,
  parseSysfsMemmap,
} from "../allocator/memory_map/parse.ts";
import { parseRep } from "../tools/trace/rep_format.ts";
import { snapshot } from "./support/conformance.ts";
import { nativeOrSkip } from "./support/native_library.ts";

/** The number of distinct bad inputs below (each allocator case counts once, though it runs per policy). */
const CATALOG_SIZE = 282;

type ErrorClass = new (...args: never[]) => AllocatorError;

/** The heap every allocator case starts from: live blocks, and blocks freed in every coalescing shape. */
interface Fixture {
  readonly heap: PhysicalAllocator;
  readonly window: Uint8Array;
  /** Live payloads, each filled with its own byte. */
  readonly live: readonly number[];
  /** Freed with both neighbours used: no coalescing. */
  readonly freedAlone: number;
  /** Freed into a free successor: it starts the merged block. */
  readonly mergedWithNext: number;
  /** The successor it absorbed (freed first). */
  readonly absorbedByPrevious: number;
  /** Freed into a free predecessor: a tombstone is left. */
  readonly mergedWithPrevious: number;
  /** Freed between two free blocks: merged both ways. */
  readonly mergedBothWays: number;
  /** Its two neighbours, freed first. */
  readonly bothWaysNeighbours: readonly [number, number];
  /** An address in the big free block at the end, never returned. */
  readonly neverReturned: number;
  /** A payload that covers a stale free header (of `staleHeaderAddress`). */
  readonly staleHeaderAddress: number;
}

const BASE_ADDRESS = 0x1000;
const HEAP_BYTES = 64 * 1024;

function makeFixture(policy: PolicyName, native: boolean, debug = false): Fixture {
  const bytes = new Uint8Array(HEAP_BYTES);
  const heap = PhysicalAllocator.fromBuffer(bytes, { policy, native, debug });
  const a = () => heap.alloc(64);
  const p0 = a();
  const freedAlone = a();
  const p1 = a();
  const n1 = a();
  const n2 = a();
  const p2 = a();
  const m1 = a();
  const m2 = a();
  const p3 = a();
  const [k1, k2, k3] = [a(), a(), a()];
  const p4 = a();
  // A block freed into its free successor, then the pair reused by one larger payload: the
  // payload now covers the successor's stale (valid, free) header.
  const s1 = heap.alloc(200);
  const s2 = heap.alloc(200);
  const p5 = heap.alloc(200);
  heap.free(freedAlone);
  heap.free(n2);
  heap.free(n1);
  heap.free(m1);
  heap.free(m2);
  heap.free(k1);
  heap.free(k3);
  heap.free(k2);
  heap.free(s2);
  heap.free(s1);
  const covering = heap.alloc(400);
  assert.equal(covering, s1, "the covering payload reuses the merged block");
  const live = [p0, p1, p2, p3, p4, p5, covering];
  // Only the first 64 bytes: the covering payload keeps the stale header further in.
  live.forEach((address, i) => heap.bytes(address, 64).fill(0x40 + i));
  heap.check();
  return {
    heap,
    window: bytes,
    live,
    freedAlone,
    mergedWithNext: n1,
    absorbedByPrevious: n2,
    mergedWithPrevious: m2,
    mergedBothWays: k2,
    bothWaysNeighbours: [k1, k3],
    neverReturned: BASE_ADDRESS + HEAP_BYTES - 1024,
    staleHeaderAddress: s2,
  };
}

/** One bad call on the fixture heap. */
interface HeapCase {
  readonly what: string;
  readonly call: (f: Fixture) => unknown;
  readonly error: ErrorClass;
  /** Text the message must contain: the offending value. */
  readonly names: (f: Fixture) => string;
  /**
   * The class in debug mode, where it differs: debug mode poisons tombstones
   * and so reports any free inside free memory as a double free.
   */
  readonly debugError?: ErrorClass;
}

const addressText = (value: unknown) =>
  typeof value === "number" && Number.isSafeInteger(value) && value > 0
    ? hex(value)
    : String(value);

/** free() and realloc() of addresses that are not live payloads, with the class each must get. */
function addressCases(): HeapCase[] {
  const bad: [string, (f: Fixture) => unknown, ErrorClass][] = [
    ["an address never returned (inside free memory)", (f) => f.neverReturned, InvalidFreeError],
    ["an address outside every region", () => 0x100000, InvalidFreeError],
    ["an address below the heap", () => 0x800, InvalidFreeError],
    ["an address inside the control block", () => BASE_ADDRESS + 16, InvalidFreeError],
    ["an address 8 bytes into a payload", (f) => f.live[1] + 8, InvalidFreeError],
    ["an address 16 bytes into a payload", (f) => f.live[1] + 16, InvalidFreeError],
    ["an unaligned address inside a payload", (f) => f.live[1] + 3, InvalidFreeError],
    ["the last byte of a payload", (f) => f.live[5] + 199, InvalidFreeError],
    [
      "a stale free header's payload inside a live payload",
      (f) => f.staleHeaderAddress,
      InvalidFreeError,
    ],
    ["a freed address (no coalescing)", (f) => f.freedAlone, DoubleFreeError],
    [
      "a freed address that merged with its free successor",
      (f) => f.mergedWithNext,
      DoubleFreeError,
    ],
    [
      "a freed address absorbed by its predecessor's merge",
      (f) => f.absorbedByPrevious,
      DoubleFreeError,
    ],
    [
      "a freed address that merged into its free predecessor",
      (f) => f.mergedWithPrevious,
      DoubleFreeError,
    ],
    ["a freed address merged both ways", (f) => f.mergedBothWays, DoubleFreeError],
    ["the lower neighbour of a both-ways merge", (f) => f.bothWaysNeighbours[0], DoubleFreeError],
    ["the upper neighbour of a both-ways merge", (f) => f.bothWaysNeighbours[1], DoubleFreeError],
    ["0 (NULL)", () => 0, InvalidFreeError],
    ["a negative address", () => -16, InvalidFreeError],
    ["a fractional address", (f) => f.live[0] + 0.5, InvalidFreeError],
    ["NaN", () => NaN, InvalidFreeError],
    ["Infinity", () => Infinity, InvalidFreeError],
    ["2^53 (not a safe integer)", () => 2 ** 53, InvalidFreeError],
    ["a huge safe address", () => 2 ** 53 - 8, InvalidFreeError],
    ["Number.MAX_VALUE", () => Number.MAX_VALUE, InvalidFreeError],
    ["a string holding a live address", (f) => hex(f.live[0]), InvalidFreeError],
    ["undefined", () => undefined, InvalidFreeError],
    ["null", () => null, InvalidFreeError],
    ["a bigint", (f) => BigInt(f.live[0]), InvalidFreeError],
  ];
  const cases: HeapCase[] = [];
  for (const [what, value, error] of bad) {
    const names = (f: Fixture) => addressText(value(f));
    const debugError = value === bad[0][1] ? DoubleFreeError : undefined;
    cases.push({
      what: `free() of ${what}`,
      call: (f) => f.heap.free(value(f) as number),
      error,
      names,
      debugError,
    });
    cases.push({
      what: `realloc() of ${what}`,
      call: (f) => f.heap.realloc(value(f) as number, 32),
      error,
      names,
      debugError,
    });
  }
  // bytes() and sizeOf() report every non-live address as INVALID_ADDRESS.
  for (const [what, value] of bad.slice(0, 16)) {
    cases.push({
      what: `bytes() of ${what}`,
      call: (f) => f.heap.bytes(value(f) as number),
      error: InvalidAddressError,
      names: (f) => addressText(value(f)),
    });
  }
  for (const [what, value] of [bad[0], bad[9], bad[12], bad[16]]) {
    cases.push({
      what: `sizeOf() of ${what}`,
      call: (f) => f.heap.sizeOf(value(f) as number),
      error: InvalidAddressError,
      names: (f) => addressText(value(f)),
    });
  }
  return cases;
}

/** Sizes, lengths and alignments. */
function valueCases(): HeapCase[] {
  const cases: HeapCase[] = [];
  const sizes: unknown[] = [0, -1, -4096, 1.5, NaN, Infinity, -Infinity, 2 ** 53, "8", undefined];
  for (const size of sizes) {
    cases.push({
      what: `alloc() of size ${String(size)}`,
      call: (f) => f.heap.alloc(size as number),
      error: InvalidSizeError,
      names: () => String(size),
    });
    cases.push({
      what: `tryAlloc() of size ${String(size)}`,
      call: (f) => f.heap.tryAlloc(size as number),
      error: InvalidSizeError,
      names: () => String(size),
    });
  }
  for (const size of [0, -1, 1.5, NaN, 2 ** 53]) {
    cases.push({
      what: `realloc() of a live block to size ${size}`,
      call: (f) => f.heap.realloc(f.live[0], size),
      error: InvalidSizeError,
      names: () => String(size),
    });
  }
  for (const size of [HEAP_BYTES, 1 << 20, 2 ** 52]) {
    cases.push({
      what: `alloc() of ${size} bytes, more than memory`,
      call: (f) => f.heap.alloc(size),
      error: OutOfMemoryError,
      names: () => `${size} bytes`,
    });
    cases.push({
      what: `realloc() of a live block to ${size} bytes, more than memory`,
      call: (f) => f.heap.realloc(f.live[0], size),
      error: OutOfMemoryError,
      names: () => `${size} bytes`,
    });
  }
  const aligns: unknown[] = [0, 3, 12, 24, -8, 0.5, NaN, Infinity, 2 ** 31, 2 ** 40, "8"];
  for (const align of aligns) {
    cases.push({
      what: `alloc() with alignment ${String(align)}`,
      call: (f) => f.heap.alloc(8, align as number),
      error: InvalidAlignmentError,
      names: () => `alignment ${describeValue(align)}`,
    });
    cases.push({
      what: `tryAlloc() with alignment ${String(align)}`,
      call: (f) => f.heap.tryAlloc(8, align as number),
      error: InvalidAlignmentError,
      names: () => `alignment ${describeValue(align)}`,
    });
  }
  for (const align of [2 ** 17, 2 ** 30]) {
    cases.push({
      what: `alloc() with alignment ${align}, larger than any region`,
      call: (f) => f.heap.alloc(8, align),
      error: OutOfMemoryError,
      names: () => `aligned to ${align}`,
    });
  }
  for (const length of [65, 1000, -1, 1.5, NaN, "8"]) {
    cases.push({
      what: `bytes() of a 64-byte payload with length ${String(length)}`,
      call: (f) => f.heap.bytes(f.live[0], length as number),
      error: InvalidSizeError,
      names: () => `${describeValue(length)} bytes`,
    });
  }
  // Symbols and bigints: a template literal or String() of them throws or misleads.
  const sym = Symbol("bad");
  const odd: [string, (f: Fixture) => unknown, ErrorClass, string][] = [
    [
      "alloc() of size Symbol(bad)",
      (f) => f.heap.alloc(sym as never),
      InvalidSizeError,
      "Symbol(bad)",
    ],
    ["alloc() of size 64n", (f) => f.heap.alloc(64n as never), InvalidSizeError, "64n"],
    [
      "alloc() with alignment Symbol(bad)",
      (f) => f.heap.alloc(8, sym as never),
      InvalidAlignmentError,
      "Symbol(bad)",
    ],
    [
      "alloc() with alignment 16n",
      (f) => f.heap.alloc(8, 16n as never),
      InvalidAlignmentError,
      "16n",
    ],
    [
      "realloc() to size Symbol(bad)",
      (f) => f.heap.realloc(f.live[0], sym as never),
      InvalidSizeError,
      "Symbol(bad)",
    ],
    [
      "bytes() of length Symbol(bad)",
      (f) => f.heap.bytes(f.live[0], sym as never),
      InvalidSizeError,
      "Symbol(bad)",
    ],
    ["bytes() of length 8n", (f) => f.heap.bytes(f.live[0], 8n as never), InvalidSizeError, "8n"],
    ["free() of Symbol(bad)", (f) => f.heap.free(sym as never), InvalidFreeError, "Symbol(bad)"],
    [
      "bytes() of Symbol(bad)",
      (f) => f.heap.bytes(sym as never),
      InvalidAddressError,
      "Symbol(bad)",
    ],
  ];
  for (const [what, call, error, names] of odd) {
    cases.push({
      what,
      call,
      error,
      names: () => names,
    });
  }
  return cases;
}

/** Every method of a closed allocator. */
function closedCases(): HeapCase[] {
  const calls: [string, (f: Fixture) => unknown][] = [
    ["alloc()", (f) => f.heap.alloc(8)],
    ["tryAlloc()", (f) => f.heap.tryAlloc(8)],
    ["free()", (f) => f.heap.free(f.live[0])],
    ["realloc()", (f) => f.heap.realloc(f.live[0], 8)],
    ["bytes()", (f) => f.heap.bytes(f.live[0])],
    ["sizeOf()", (f) => f.heap.sizeOf(f.live[0])],
    ["stats()", (f) => f.heap.stats()],
    ["check()", (f) => f.heap.check()],
    ["blocks()", (f) => [...f.heap.blocks()]],
  ];
  return calls.map(([what, call]) => ({
    what: `${what} of a closed allocator`,
    call,
    error: AllocatorClosedError,
    names: () => "closed",
  }));
}

/** The stable code each class must carry, spelled out so a renamed code fails here. */
const CODES = new Map<ErrorClass, string>([
  [OutOfMemoryError, "OUT_OF_MEMORY"],
  [InvalidFreeError, "INVALID_FREE"],
  [DoubleFreeError, "DOUBLE_FREE"],
  [InvalidAddressError, "INVALID_ADDRESS"],
  [InvalidSizeError, "INVALID_SIZE"],
  [InvalidAlignmentError, "INVALID_ALIGNMENT"],
  [InvalidOptionError, "INVALID_OPTION"],
  [InvalidMemoryError, "INVALID_MEMORY"],
  [AllocatorClosedError, "ALLOCATOR_CLOSED"],
  [MemoryDetachedError, "MEMORY_DETACHED"],
  [MemoryInUseError, "MEMORY_IN_USE"],
  [MemoryMapError, "MEMORY_MAP_INVALID"],
  [TraceFormatError, "TRACE_INVALID"],
]);

/** Asserts `call` throws `error` with its code and a message containing `names`. */
function assertRejects(call: () => unknown, error: ErrorClass, names: string, what: string): void {
  assert.throws(call, (thrown: unknown) => {
    assert.ok(thrown instanceof error, `${what}: threw ${String(thrown)}, expected ${error.name}`);
    const code = CODES.get(error);
    assert.ok(code !== undefined, `${what}: no code listed for ${error.name}`);
    assert.equal(thrown.code, code, `${what}: code`);
    assert.ok(
      thrown.message.includes(names),
      `${what}: message "${thrown.message}" does not name ${names}`,
    );
    assert.ok(!thrown.message.endsWith("."), `${what}: message ends with a period`);
    return true;
  }, what);
}

const HEAP_CASES: HeapCase[] = [...addressCases(), ...valueCases()];
const CLOSED_CASES: HeapCase[] = closedCases();

/** The paths the allocator cases run on: TS, and native when the library is built. */
const NATIVE_MODES = nativeOrSkip("the native-path runs of the bad-input catalog") === null
  ? [false]
  : [false, true];
/** [native, debug] configurations of the allocator cases. */
const CONFIGS = [...NATIVE_MODES.map((native) => [native, false]), [false, true]] as const;

for (const policy of POLICY_NAMES) {
  for (const [native, debug] of CONFIGS) {
    const label = `${policy}${native ? ", native" : ""}${debug ? ", debug" : ""}`;
    Deno.test(`bad input catalog (${label}): allocator calls are rejected without change`, async (t) => {
      for (const c of HEAP_CASES) {
        await t.step(c.what, () => {
          const f = makeFixture(policy, native, debug);
          const before = snapshot(f.heap, f.live);
          const raw = f.window.slice();
          const error = debug ? c.debugError ?? c.error : c.error;
          assertRejects(() => c.call(f), error, c.names(f), c.what);
          f.heap.check();
          assert.deepEqual(snapshot(f.heap, f.live), before, `${c.what}: heap changed`);
          assert.deepEqual(f.window, raw, `${c.what}: memory bytes changed`);
        });
      }
    });
  }

  Deno.test(`bad input catalog (${policy}): a closed allocator refuses every method`, async (t) => {
    for (const c of CLOSED_CASES) {
      await t.step(c.what, () => {
        const f = makeFixture(policy, false);
        f.heap.close();
        const raw = f.window.slice();
        assertRejects(() => c.call(f), c.error, c.names(f), c.what);
        assert.deepEqual(f.window, raw, `${c.what}: memory bytes changed`);
        f.heap.close(); // a second close is harmless
      });
    }
    await t.step("every method of an allocator whose memory was closed", () => {
      const memory = bufferMemory([{ start: 0x1000, length: 4096 }]);
      let closed = false;
      const heap = new PhysicalAllocator({
        regions: memory.regions,
        get closed() {
          return closed;
        },
      }, { policy, native: false });
      const address = heap.alloc(8);
      closed = true;
      assertRejects(() => heap.alloc(8), AllocatorClosedError, "closed", "alloc");
      assertRejects(() => heap.free(address), AllocatorClosedError, "closed", "free");
      assertRejects(() => heap.check(), AllocatorClosedError, "closed", "check");
    });
  });
}

for (const policy of ["tlsf", "first-fit"] as const) {
  for (const native of NATIVE_MODES) {
    Deno.test(
      `bad input catalog (${policy}${
        native ? ", native" : ""
      }): a transferred or shrunk buffer is noticed before any read`,
      async (t) => {
        for (const c of CLOSED_CASES) {
          await t.step(c.what.replace("a closed allocator", "a transferred buffer"), () => {
            const f = makeFixture(policy, native);
            const moved = (f.window.buffer as ArrayBuffer).transfer();
            const raw = new Uint8Array(moved).slice();
            assertRejects(() => c.call(f), MemoryDetachedError, "detached", c.what);
            assert.deepEqual(new Uint8Array(moved), raw, `${c.what}: memory bytes changed`);
          });
        }
        await t.step(
          "every call after a resizable buffer shrank below the window, grown back or not",
          () => {
            const buffer = new ArrayBuffer(HEAP_BYTES, { maxByteLength: 2 * HEAP_BYTES });
            const heap = PhysicalAllocator.fromBuffer(buffer, { policy, native });
            const small = heap.alloc(64);
            const big = heap.alloc(HEAP_BYTES / 2);
            buffer.resize(HEAP_BYTES / 2);
            assertRejects(() => heap.alloc(64), MemoryDetachedError, "shrunk", "alloc");
            // Grown back past the window: the fixed-length view is in bounds again, but
            // the bytes past the cut came back zeroed (the big block's tail, headers):
            // the heap keeps refusing, as MemoryDetachedError promises, and writes nothing.
            buffer.resize(2 * HEAP_BYTES);
            const raw = new Uint8Array(buffer).slice();
            const calls: [string, () => unknown][] = [
              ["alloc", () => heap.alloc(64)],
              ["free", () => heap.free(small)],
              ["realloc", () => heap.realloc(small, 128)],
              ["bytes", () => heap.bytes(big)],
              ["sizeOf", () => heap.sizeOf(big)],
              ["stats", () => heap.stats()],
              ["check", () => heap.check()],
            ];
            for (const [what, call] of calls) {
              assertRejects(
                call,
                MemoryDetachedError,
                "shrunk",
                `${what} after the buffer grew back`,
              );
            }
            assert.deepEqual(new Uint8Array(buffer), raw, "a refused call wrote to the buffer");
            heap.close();
          },
        );
      },
    );
  }
}

/** One bad call that needs no fixture heap. */
interface PlainCase {
  readonly what: string;
  readonly call: () => unknown;
  readonly error: ErrorClass;
  readonly names: string;
}

/** Allocator options, and memory built by hand, that must be refused before memory is written. */
function constructionCases(): (PlainCase & { readonly window?: Uint8Array })[] {
  const cases: (PlainCase & { readonly window?: Uint8Array })[] = [];
  const option = (what: string, options: object, error: ErrorClass, names: string) => {
    const window = new Uint8Array(4096).fill(0x5a);
    cases.push({
      what: `fromBuffer() with ${what}`,
      call: () => PhysicalAllocator.fromBuffer(window, options as never),
      error,
      names,
      window,
    });
  };
  option('policy "best-fit"', { policy: "best-fit" }, InvalidOptionError, "best-fit");
  option("policy 42", { policy: 42 }, InvalidOptionError, "42");
  option('policy ""', { policy: "" }, InvalidOptionError, 'policy ""');
  for (const align of [0, 3, -8, 0.5, NaN, 2 ** 31]) {
    option(`align ${align}`, { align }, InvalidAlignmentError, `alignment ${align}`);
  }
  option('native "yes"', { native: "yes" }, InvalidOptionError, "yes");
  option("policy Symbol(p)", { policy: Symbol("p") }, InvalidOptionError, "Symbol(p)");
  option("baseAddress Symbol(b)", { baseAddress: Symbol("b") }, InvalidOptionError, "Symbol(b)");
  option("baseAddress 4096n", { baseAddress: 4096n }, InvalidOptionError, "4096n");
  option("align Symbol(a)", { align: Symbol("a") }, InvalidAlignmentError, "Symbol(a)");
  option("native Symbol(n)", { native: Symbol("n") }, InvalidOptionError, "Symbol(n)");
  option("debug Symbol(d)", { debug: Symbol("d") }, InvalidOptionError, "Symbol(d)");
  option('reinitialize "yes"', { reinitialize: "yes" }, InvalidOptionError, "reinitialize");
  option("native 1", { native: 1 }, InvalidOptionError, "1");
  option('debug "yes"', { debug: "yes" }, InvalidOptionError, "yes");
  option("debug 1", { debug: 1 }, InvalidOptionError, "debug 1");
  for (const baseAddress of [0, -4096, 0x1004, 1.5, NaN, 2 ** 53]) {
    option(
      `baseAddress ${baseAddress}`,
      { baseAddress },
      InvalidOptionError,
      `base address ${baseAddress}`,
    );
  }
  option("baseAddress ending past 2^53", { baseAddress: 2 ** 53 - 8 }, InvalidMemoryError, "2^53");
  for (const options of [null, 42]) {
    const window = new Uint8Array(4096).fill(0x5a);
    cases.push({
      what: `fromBuffer() with options ${String(options)}`,
      call: () => PhysicalAllocator.fromBuffer(window, options as never),
      error: InvalidOptionError,
      names: `options ${String(options)}`,
      window,
    });
  }
  cases.push({
    what: "fromBuffer() of a number instead of a buffer",
    call: () => PhysicalAllocator.fromBuffer(4096 as never),
    error: InvalidMemoryError,
    names: "4096",
  });
  {
    const window = new Uint8Array(4096).fill(0x5a);
    cases.push({
      what: "fromBuffer() of a view at an odd byte offset",
      call: () => PhysicalAllocator.fromBuffer(window.subarray(3)),
      error: InvalidMemoryError,
      names: "byte offset 3",
      window,
    });
  }
  {
    const window = new Uint8Array(4096).fill(0x5a);
    cases.push({
      what: "fromBuffer() of a view at byte offset 6 (window not 4-aligned)",
      call: () => PhysicalAllocator.fromBuffer(window.subarray(6)),
      error: InvalidMemoryError,
      names: "byte offset 6",
      window,
    });
  }
  {
    const buffer = new ArrayBuffer(4096);
    buffer.transfer();
    cases.push({
      what: "fromBuffer() of a detached (transferred) buffer",
      call: () => PhysicalAllocator.fromBuffer(buffer),
      error: InvalidMemoryError,
      names: "detached",
    });
  }
  {
    const window = new Uint8Array(8192).fill(0x5a);
    const live = PhysicalAllocator.fromBuffer(window.subarray(0, 4096), { native: false });
    live.alloc(64);
    const held = window.slice();
    cases.push({
      what: "fromBuffer() over memory a live allocator manages",
      call: () => PhysicalAllocator.fromBuffer(window.subarray(0, 4096)),
      error: MemoryInUseError,
      names: "0x1000",
      window: held === null ? undefined : window,
    });
    cases.push({
      what: "fromBuffer() over memory overlapping a live allocator's region",
      call: () => PhysicalAllocator.fromBuffer(window.subarray(2048), { baseAddress: 0x1800 }),
      error: MemoryInUseError,
      names: "0x1000",
      window,
    });
  }
  {
    const window = new Uint8Array(24);
    cases.push({
      what: "fromBuffer() with a buffer too small for one block",
      call: () => PhysicalAllocator.fromBuffer(window),
      error: InvalidMemoryError,
      names: "40-byte block",
      window,
    });
  }

  const region = (buffer: ArrayBuffer, base: number, offset: number, length: number) => ({
    base,
    bytes: new Uint8Array(buffer, offset, length),
  });
  const memoryCase = (
    what: string,
    make: (buffer: ArrayBuffer) => PhysicalMemory,
    names: string,
    error: ErrorClass = InvalidMemoryError,
  ) => {
    const buffer = new ArrayBuffer(8192);
    const window = new Uint8Array(buffer).fill(0x5a);
    cases.push({
      what: `new PhysicalAllocator() over ${what}`,
      call: () => new PhysicalAllocator(make(buffer)),
      error,
      names,
      window,
    });
  };
  memoryCase("no regions", () => ({ regions: [] }), "no regions");
  memoryCase("undefined instead of memory", () => undefined as never, "memory undefined");
  memoryCase("overlapping regions", (b) => ({
    regions: [region(b, 0x1000, 0, 4096), region(b, 0x1800, 0x800, 4096)],
  }), "0x1800 overlaps region 0x1000");
  memoryCase("a region of 0 bytes", (b) => ({ regions: [region(b, 0x1000, 0, 0)] }), "length 0");
  memoryCase("a region at address 0", (b) => ({ regions: [region(b, 0, 0, 4096)] }), "at 0");
  memoryCase(
    "a region past 2^53",
    (b) => ({ regions: [region(b, 2 ** 53 - 4096, 0, 8192)] }),
    "2^53",
  );
  memoryCase("regions in different buffers", (b) => ({
    regions: [region(b, 0x1000, 0, 4096), region(new ArrayBuffer(4096), 0x3000, 0, 4096)],
  }), "different buffer");
  memoryCase("regions at inconsistent buffer offsets", (b) => ({
    regions: [region(b, 0x1000, 0, 2048), region(b, 0x2000, 0x900, 2048)],
  }), "0x2000 sits at buffer offset 0x900");
  memoryCase("only regions too small for a block", (b) => ({
    regions: [region(b, 0x1000, 0, 24), region(b, 0x1100, 0x100, 32)],
  }), "none of its 2 regions");
  memoryCase(
    "a window that would start before its buffer (base 0x1003 at offset 0)",
    (b) => ({ regions: [region(b, 0x1003, 0, 4096)] }),
    "byte offset -3",
  );
  memoryCase(
    "a region whose window would start at a negative address",
    (b) => ({ regions: [region(b, 4, 0, 4096)] }),
    "byte offset -4",
  );
  memoryCase(
    "a region that is not a region",
    () => ({ regions: [Symbol("r")] }) as never,
    "Symbol(r)",
  );

  const buffer = (what: string, ranges: { start: number; length: number }[], names: string) =>
    cases.push({
      what: `bufferMemory() of ${what}`,
      call: () => bufferMemory(ranges),
      error: InvalidMemoryError,
      names,
    });
  buffer("no ranges", [], "no regions");
  buffer(
    "overlapping ranges",
    [{ start: 0x1000, length: 0x1000 }, { start: 0x1800, length: 16 }],
    "0x1800 overlaps region 0x1000",
  );
  buffer("an empty range", [{ start: 0x1000, length: 0 }], "length 0");
  buffer("a negative length", [{ start: 0x1000, length: -64 }], "length -64");
  buffer("a fractional length", [{ start: 0x1000, length: 64.5 }], "length 64.5");
  buffer("a range at 0", [{ start: 0, length: 4096 }], "at 0");
  buffer("a negative start", [{ start: -4096, length: 4096 }], "at -4096");
  buffer("a range past 2^53", [{ start: 2 ** 53 - 4096, length: 8192 }], "2^53");
  buffer("ranges a petabyte apart (too large to allocate)", [
    { start: 0x1000, length: 64 },
    { start: 2 ** 50, length: 64 },
  ], "spanning 1125899906838592 bytes");
  return cases;
}

Deno.test("bad input catalog: options and memory are refused before memory is written", async (t) => {
  for (const c of constructionCases()) {
    await t.step(c.what, () => {
      const raw = c.window?.slice();
      assertRejects(c.call, c.error, c.names, c.what);
      if (c.window !== undefined) assert.deepEqual(c.window, raw, `${c.what}: memory written`);
    });
  }
});

/** Memory maps: parse and normalise errors. */
function memoryMapCases(): PlainCase[] {
  const cases: PlainCase[] = [];
  const add = (what: string, call: () => unknown, names: string) =>
    cases.push({ what, call, error: MemoryMapError, names });
  const usable = (start: number, end: number): MemoryMapEntry => ({ start, end, type: "usable" });
  add("parseE820() of text with no BIOS-e820 line", () => parseE820("hello\n"), "no BIOS-e820");
  add(
    "parseE820() of an end before its start",
    () => parseE820("BIOS-e820: [mem 0x2000-0x1fff] usable"),
    "end 0x1fff",
  );
  add(
    "parseE820() of a malformed line",
    () => parseE820("BIOS-e820: [mem 0x2000] usable"),
    "line 1",
  );
  add(
    "parseE820() of an address past 2^53",
    () => parseE820("BIOS-e820: [mem 0x0-0x20000000000000] usable"),
    "0x20000000000000",
  );
  add(
    "parseE820() of a non-hex address",
    () => parseE820("BIOS-e820: [mem 0x1g-0x2000] usable"),
    "0x1g",
  );
  add("parseMemoryMapJson() of []", () => parseMemoryMapJson("[]"), "empty");
  add(
    "parseMemoryMapJson() of a bigint start",
    () => parseMemoryMapJson([{ start: 4096n, length: 4096, type: "usable" }]),
    "4096n",
  );
  add(
    "parseMemoryMapJson() of a Symbol type",
    () => parseMemoryMapJson([{ start: 0, length: 4096, type: Symbol("t") }]),
    "Symbol(t)",
  );
  add(
    "parseSysfsMemmap() of an entry without end",
    () => parseSysfsMemmap([{ name: "0", start: "0x0", type: "System RAM" } as never]),
    "end is missing",
  );
  add(
    "parseSysfsMemmap() of an entry with a numeric start",
    () => parseSysfsMemmap([{ name: "0", start: 0, end: "0xfff", type: "System RAM" } as never]),
    "number 0",
  );
  add(
    "normalizeMemoryMap() with pageBytes 3 * 2^31 (a power of two in 32-bit arithmetic)",
    () => normalizeMemoryMap([usable(0, 0x100000)], { pageBytes: 3 * 2 ** 31 }),
    "pageBytes 6442450944",
  );
  add(
    "normalizeMemoryMap() with pageBytes Symbol(p)",
    () => normalizeMemoryMap([usable(0, 0x100000)], { pageBytes: Symbol("p") as never }),
    "Symbol(p)",
  );
  add("parseMemoryMapJson() of invalid JSON", () => parseMemoryMapJson("[{"), "JSON");
  add("parseMemoryMapJson() of an object", () => parseMemoryMapJson("{}"), "an object");
  add(
    "parseMemoryMapJson() of an unknown key",
    () => parseMemoryMapJson('[{"start":0,"size":1,"type":"usable"}]'),
    '"size"',
  );
  add(
    "parseMemoryMapJson() of a missing start",
    () => parseMemoryMapJson('[{"end":4095,"type":"usable"}]'),
    '"start" is missing',
  );
  add(
    "parseMemoryMapJson() of both end and length",
    () => parseMemoryMapJson('[{"start":0,"end":1,"length":1,"type":"usable"}]'),
    '"end" and "length"',
  );
  add(
    "parseMemoryMapJson() of a negative start",
    () => parseMemoryMapJson('[{"start":-4096,"length":4096,"type":"usable"}]'),
    "-4096",
  );
  add(
    "parseMemoryMapJson() of a fractional length",
    () => parseMemoryMapJson('[{"start":0,"length":1.5,"type":"usable"}]'),
    "1.5",
  );
  add(
    "parseMemoryMapJson() of a length of 0",
    () => parseMemoryMapJson('[{"start":4096,"length":0,"type":"usable"}]'),
    '"length" is 0',
  );
  add(
    "parseMemoryMapJson() of an end past 2^53",
    () => parseMemoryMapJson('[{"start":0,"end":"0x20000000000000","type":"usable"}]'),
    "0x20000000000000",
  );
  add(
    "parseMemoryMapJson() of an end before its start",
    () => parseMemoryMapJson('[{"start":8192,"end":4095,"type":"usable"}]'),
    "end 0xfff",
  );
  add(
    "parseMemoryMapJson() of a type that is an object",
    () => parseMemoryMapJson('[{"start":0,"length":1,"type":{}}]'),
    "an object",
  );
  add("parseSysfsMemmap() of no entries", () => parseSysfsMemmap([]), "no entries");
  add(
    "parseSysfsMemmap() of a bad number",
    () => parseSysfsMemmap([{ name: "0", start: "zz", end: "0x1", type: "System RAM" }]),
    "zz",
  );
  add("parseSysfsDump() of a short line", () => parseSysfsDump("0 0x0 0x9fbff\n"), "line 1");
  add("parseAddress() of an empty string", () => parseAddress("", "line 7"), "(empty)");
  add("normalizeMemoryMap() of no entries", () => normalizeMemoryMap([]), "no entries");
  add(
    "normalizeMemoryMap() of an empty entry",
    () => normalizeMemoryMap([usable(0x2000, 0x2000)]),
    "end 0x2000",
  );
  add(
    "normalizeMemoryMap() of an end before its start",
    () => normalizeMemoryMap([usable(0x3000, 0x2000)]),
    "end 0x2000",
  );
  add(
    "normalizeMemoryMap() of a negative start",
    () => normalizeMemoryMap([usable(-4096, 0x2000)]),
    "-4096",
  );
  add(
    "normalizeMemoryMap() of an end past 2^53",
    () => normalizeMemoryMap([usable(0, 2 ** 53 + 2)]),
    String(2 ** 53 + 2),
  );
  add(
    "normalizeMemoryMap() of an unknown type",
    () => normalizeMemoryMap([{ start: 0, end: 4096, type: "ram" as never }]),
    '"ram"',
  );
  add(
    "normalizeMemoryMap() of overlapping entries with rejectOverlaps",
    () =>
      normalizeMemoryMap([usable(0x100000, 0x200000), {
        start: 0x180000,
        end: 0x300000,
        type: "reserved",
      }], { rejectOverlaps: true }),
    "overlap at 0x180000",
  );
  add(
    "normalizeMemoryMap() with pageBytes 3",
    () => normalizeMemoryMap([usable(0, 0x100000)], { pageBytes: 3 }),
    "pageBytes 3",
  );
  add(
    "normalizeMemoryMap() with mmapMinAddress -1",
    () => normalizeMemoryMap([usable(0, 0x100000)], { mmapMinAddress: -1 }),
    "-1",
  );
  add(
    "normalizeMemoryMap() with minRegionBytes 0",
    () => normalizeMemoryMap([usable(0, 0x100000)], { minRegionBytes: 0 }),
    "minRegionBytes 0",
  );
  add("new MemoryMap() of no entries", () => new MemoryMap([]), "no entries");
  add(
    "MemoryMap.reserve() with an empty label",
    () => new MemoryMap([usable(0, 0x100000)]).reserve(0x1000, 0x1000, " "),
    "label",
  );
  add(
    "MemoryMap.reserve() of 0 bytes",
    () => new MemoryMap([usable(0, 0x100000)]).reserve(0x1000, 0, "kernel"),
    "length 0",
  );
  add(
    "MemoryMap.reserve() past 2^53",
    () => new MemoryMap([usable(0, 0x100000)]).reserve(2 ** 53 - 4096, 8192, "kernel"),
    "2^53",
  );
  return cases;
}

/** Malformed `.rep` traces. */
function traceCases(): PlainCase[] {
  const header = "4096\n2\n2\n1\n";
  const bad: [string, string, string][] = [
    ["an empty file", "", "suggested heap size"],
    ["a header cut short", "4096\n2\n", "number of operations"],
    ["a negative heap size", "-1\n2\n1\n1\na 0 8\n", "'-1'"],
    ["a fractional id count", "4096\n2.5\n1\n1\na 0 8\n", "'2.5'"],
    ["a non-numeric operation count", "4096\n2\nmany\n1\n", "'many'"],
    ["an operation count past 2^31", "4096\n2\n4294967296\n1\n", "4294967296"],
    ["fewer operations than the header says", `${header}a 0 8\n`, "after 1 operations"],
    ["an unknown operation", `${header}m 0 8\nf 0\n`, "'m'"],
    ["an alloc with too many fields", `${header}a 0 8 9\nf 0\n`, "'a 0 8 9'"],
    ["a realloc without a size", `${header}r 0\nf 0\n`, "'r 0'"],
    ["a free with a size", `${header}a 0 8\nf 0 8\n`, "'f 0 8'"],
    ["a negative alloc id", `${header}a -1 8\nf 0\n`, "id -1"],
    ["a free of id -2", `${header}a 0 8\nf -2\n`, "id -2"],
    ["a fractional size", `${header}a 0 8.5\nf 0\n`, "'8.5'"],
    ["a negative size", `${header}a 0 -8\nf 0\n`, "size -8"],
    ["a size past 2^53", `${header}a 0 9007199254740993\nf 0\n`, "'9007199254740993'"],
    ["an id past 2^31", `${header}a 2147483648 8\nf 0\n`, "id 2147483648"],
  ];
  return bad.map(([what, text, names]) => ({
    what: `parseRep() of ${what}`,
    call: () => parseRep(text),
    error: TraceFormatError,
    names,
  }));
}

Deno.test("bad input catalog: malformed memory maps and traces are refused", async (t) => {
  for (const c of [...memoryMapCases(), ...traceCases()]) {
    await t.step(c.what, () => assertRejects(c.call, c.error, c.names, c.what));
  }
});

/** Memory-map input that is odd but well defined: normalised as documented, not refused. */
Deno.test("bad input catalog: unsorted, page-0 and overlapping maps are normalised as documented", () => {
  const unsorted = normalizeMemoryMap([
    { start: 0x200000, end: 0x300000, type: "usable" },
    { start: 0x100000, end: 0x180000, type: "usable" },
  ]);
  assert.deepEqual(unsorted.usable, [
    { start: 0x100000, length: 0x80000 },
    { start: 0x200000, length: 0x100000 },
  ]);
  const pageZero = normalizeMemoryMap([{ start: 0, end: 0x9fc00, type: "usable" }], {
    mmapMinAddress: 4096,
  });
  assert.equal(pageZero.usable[0].start, 0x1000);
  assert.ok(pageZero.report.reasons.some((r) => r.reason === "page 0" && r.sizeBytes === 4096));
  const overlapping = normalizeMemoryMap([
    { start: 0x100000, end: 0x200000, type: "usable" },
    { start: 0x180000, end: 0x280000, type: "reserved" },
  ]);
  assert.deepEqual(overlapping.usable, [{ start: 0x100000, length: 0x80000 }]);
  assert.equal(overlapping.report.overlapBytes, 0x80000);
});

/** Unknown flags and commands of the command-line tools. */
const CLI_CASES: [string, string[], string][] = [
  ["tools/boot_demo.ts", ["--bogus"], "--bogus"],
  ["tools/boot_demo.ts", ["--policy", "best-fit"], "best-fit"],
  ["tools/trace/main.ts", ["replay", "--bogus", "x.rep"], "--bogus"],
  ["tools/trace/main.ts", ["score", "--policies", "best-fit", "x.rep"], "best-fit"],
  ["tools/trace/main.ts", ["no-such-command"], "no-such-command"],
  ["tools/fuzz.ts", ["--bogus"], "--bogus"],
  ["tools/fuzz.ts", ["--path", "gpu"], "gpu"],
];

Deno.test("bad input catalog: unknown command-line flags exit non-zero with a one-line error", async (t) => {
  const root = new URL("../", import.meta.url);
  for (const [script, args, names] of CLI_CASES) {
    await t.step(`${script} ${args.join(" ")}`, async () => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", script, ...args],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.notEqual(output.code, 0);
      const first = stderr.split("\n")[0];
      assert.ok(first.includes(names), `first stderr line "${first}" does not name ${names}`);
      assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
      assert.doesNotMatch(stderr, /Uncaught/);
    });
  }
});

Deno.test("bad input catalog: the catalog holds CATALOG_SIZE bad inputs", () => {
  const count = HEAP_CASES.length + CLOSED_CASES.length + 1 + 1 + constructionCases().length +
    memoryMapCases().length + traceCases().length + 3 + CLI_CASES.length;
  assert.equal(count, CATALOG_SIZE);
});
