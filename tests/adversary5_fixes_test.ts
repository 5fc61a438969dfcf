/**
 * What the fifth adversarial round found, fixed: each test failed before its
 * fix. Heap calls whose input runs the caller's code, walks after close,
 * regions' physical bases, large alignments under TLSF, memory maps from
 * hostile input (format detection, getters, Proxies, holes, huge sparse
 * arrays, wrong types), host map reads, and identity memory whose window
 * spans unmapped gaps.
 */
import assert from "node:assert/strict";
import {
  AllocatorClosedError,
  detectMemoryMapFormat,
  InvalidMemoryError,
  InvalidOptionError,
  mapIdentity,
  MemoryDetachedError,
  MemoryMap,
  MemoryMapError,
  normalizeMemoryMap,
  parseE820,
  parseMemoryMap,
  parseMemoryMapJson,
  parseSysfsDump,
  parseSysfsMemmap,
  PhysicalAllocator,
  readSysfsMemmap,
} from "../mod.ts";
import { CAN_MAP_IDENTITY } from "./support/identity.ts";
import { Random } from "./support/random.ts";

const MIB = 1 << 20;
const GIB = 2 ** 30;

Deno.test("createCache reads its options before it checks the heap: a getter that closes or detaches it is refused", () => {
  const closing = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB));
  assert.throws(
    () =>
      closing.createCache("inode", 64, {
        get align() {
          closing.close();
          return 8;
        },
      }),
    AllocatorClosedError,
  );
  for (const how of ["transfer", "shrink"] as const) {
    const buffer = new ArrayBuffer(4 * MIB, { maxByteLength: 8 * MIB });
    const heap = PhysicalAllocator.fromBuffer(buffer);
    assert.throws(
      () =>
        heap.createCache("inode", 64, {
          get align() {
            if (how === "transfer") buffer.transfer();
            else buffer.resize(1024);
            return 8;
          },
        }),
      MemoryDetachedError,
      how,
    );
  }
});

Deno.test("a layerRuns() walk begun before close() or a transfer stops with a typed error", () => {
  for (const how of ["close", "transfer"] as const) {
    const buffer = new ArrayBuffer(4 * MIB);
    const heap = PhysicalAllocator.fromBuffer(buffer);
    for (let i = 0; i < 30; i++) heap.alloc(5000 + i);
    heap.alloc(4096, 4096);
    heap.alloc(32);
    const runs = heap.layerRuns();
    assert.equal(runs.next().done, false);
    if (how === "close") heap.close();
    else buffer.transfer();
    assert.throws(() => runs.next(), how === "close" ? AllocatorClosedError : MemoryDetachedError);
  }
});

Deno.test("stats() reports the physical base a region was given, and refuses a malformed one", () => {
  const heap = new PhysicalAllocator({
    regions: [{ base: 0x100000, bytes: new Uint8Array(2 * MIB), physicalBase: 0x40000000 }],
  });
  const region = heap.stats().regions[0];
  assert.equal(region.physicalBase, 0x40000000);
  assert.equal(region.identity, false);
  assert.equal(region.offsetBytes, 0x100000 - 0x40000000);
  heap.close();
  for (const physicalBase of [-4096, 0.5, "0x1000", 2 ** 53, Symbol("x"), NaN]) {
    assert.throws(
      () =>
        new PhysicalAllocator({
          regions: [{
            base: 0x100000,
            bytes: new Uint8Array(MIB),
            physicalBase: physicalBase as number,
          }],
        }),
      InvalidMemoryError,
      String(physicalBase),
    );
  }
});

Deno.test("realloc shrinks a page run in place: its address and page alignment stay, its frames past the size go back", () => {
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB));
  for (const [pages, sizeBytes] of [[1, 2048], [2, 4096], [16, 32768], [4, 5000]]) {
    const run = heap.alloc(pages * 4096, 4096);
    heap.bytes(run, Math.min(sizeBytes, 64)).fill(7);
    const freeBefore = heap.stats().freeBytes;
    assert.equal(heap.realloc(run, sizeBytes), run, `${pages} pages to ${sizeBytes} bytes`);
    assert.equal(heap.sizeOf(run), sizeBytes);
    assert.ok(heap.bytes(run, Math.min(sizeBytes, 64)).every((byte) => byte === 7));
    const pagesKept = Math.ceil(sizeBytes / 4096);
    assert.equal(heap.stats().freeBytes - freeBefore, (pages - pagesKept) * 4096);
    heap.free(run);
  }
  heap.check();
});

/** True when some free block of `heap` holds `sizeBytes` at `alignBytes` (its header before the payload). */
function someFreeBlockHolds(
  heap: PhysicalAllocator,
  sizeBytes: number,
  alignBytes: number,
): boolean {
  for (const block of heap.blocks()) {
    if (!block.free) continue;
    const end = block.address + block.sizeBytes;
    // The payload follows a 16-byte header; a gap in front must hold a free block of 40 bytes.
    let payload = Math.ceil((block.address + 16) / alignBytes) * alignBytes;
    if (payload - 16 !== block.address && payload - 16 - block.address < 40) payload += alignBytes;
    if (payload + Math.max(sizeBytes, 24) <= end) return true;
  }
  return false;
}

Deno.test("TLSF finds a block for a large alignment wherever one holds it: OUT_OF_MEMORY only when none does", () => {
  // The round's case: 1 MiB at [768 KiB, 1792 KiB) holds the address 1 MiB.
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(MIB), { baseAddress: 768 * 1024 });
  assert.equal(heap.alloc(1, MIB), MIB);
  heap.check();
  heap.close();
  const random = new Random(0x5a1);
  let served = 0;
  let refused = 0;
  for (let round = 0; round < 30; round++) {
    const heap = PhysicalAllocator.fromBuffer(new Uint8Array(MIB), {
      layers: false,
      baseAddress: 4096 * random.int(1, 300),
    });
    const live: number[] = [];
    for (let i = 0; i < 80; i++) {
      if (live.length > 0 && random.next() < 0.4) {
        heap.free(live.splice(random.int(0, live.length - 1), 1)[0]);
        continue;
      }
      const sizeBytes = random.int(1, 150000);
      const alignBytes = 2 ** random.int(3, 19);
      const holds = someFreeBlockHolds(heap, sizeBytes, alignBytes);
      const address = heap.tryAlloc(sizeBytes, alignBytes);
      if (address === 0) {
        assert.equal(
          holds,
          false,
          `refused ${sizeBytes} at ${alignBytes} with a free block that holds it`,
        );
        refused++;
      } else {
        assert.equal(address % alignBytes, 0);
        live.push(address);
        served++;
      }
    }
    heap.check();
    heap.close();
  }
  assert.ok(served > 100 && refused > 10, `served ${served}, refused ${refused}`);
});

Deno.test("memory map format detection reads what a text is, not a phrase inside it", () => {
  const e820Line = "BIOS-e820: [mem 0x0000000000100000-0x000000007fffffff] usable";
  const json = `[{"start":"0x200000","length":4096,"type":"${e820Line}"}]`;
  assert.equal(detectMemoryMapFormat(json), "json");
  assert.deepEqual(parseMemoryMap(json).entries.map((e) => [e.start, e.end, e.type]), [
    [0x200000, 0x201000, "unknown"],
  ]);
  const sysfs = `0 0x100000 0x100fff ${e820Line}\n`;
  assert.equal(detectMemoryMapFormat(sysfs), "sysfs");
  assert.equal(parseMemoryMap(sysfs).entries[0].end, 0x101000);
  assert.equal(detectMemoryMapFormat(`[    0.000000] ${e820Line}\n`), "e820");
  assert.equal(detectMemoryMapFormat(`kernel log\n${e820Line}\n`), "e820");
  // A byte-order mark is read past in every format.
  assert.equal(parseMemoryMap(`\ufeff[{"start":0,"length":4096,"type":"usable"}]`).format, "json");
  assert.equal(parseMemoryMap(`\ufeff${e820Line}`).format, "e820");
  assert.throws(() => parseMemoryMap(sysfs, "xml" as "json"), MemoryMapError);
});

Deno.test("memory map functions refuse odd input with MemoryMapError, reading each field once", () => {
  const entry = { start: 0x100000, length: 0x100000, type: "usable" };
  const { proxy: revoked, revoke } = Proxy.revocable({}, {});
  revoke();
  const throwing = {
    get start(): number {
      throw new Error("boom");
    },
  };
  const holes: unknown[] = [];
  holes[2] = entry;
  const huge: unknown[] = [];
  huge[2 ** 32 - 2] = entry;
  const ok = [{ start: 0x100000, end: 0x300000, type: "usable" as const }];
  const calls: [string, () => unknown][] = [
    ["parseMemoryMapJson(throwing getter)", () => parseMemoryMapJson([throwing])],
    ["parseMemoryMapJson(revoked)", () => parseMemoryMapJson(revoked)],
    ["parseMemoryMapJson([revoked])", () => parseMemoryMapJson([revoked])],
    ["parseMemoryMapJson(holes)", () => parseMemoryMapJson(holes)],
    ["parseMemoryMapJson(2^32 - 1 long)", () => parseMemoryMapJson(huge)],
    ["parseSysfsMemmap([revoked])", () => parseSysfsMemmap([revoked] as never)],
    ["normalizeMemoryMap(revoked)", () => normalizeMemoryMap(revoked as never)],
    ["normalizeMemoryMap('abc')", () => normalizeMemoryMap("abc" as never)],
    ["normalizeMemoryMap(ok, revoked)", () => normalizeMemoryMap(ok, revoked as never)],
    [
      "normalizeMemoryMap(reservations 5)",
      () => normalizeMemoryMap(ok, { reservations: 5 as never }),
    ],
    [
      "normalizeMemoryMap(reservations [null])",
      () => normalizeMemoryMap(ok, { reservations: [null as never] }),
    ],
    [
      "normalizeMemoryMap(rejectOverlaps 'yes')",
      () => normalizeMemoryMap(ok, { rejectOverlaps: "yes" as never }),
    ],
    [
      "normalizeMemoryMap(start Symbol)",
      () => normalizeMemoryMap([{ start: Symbol("s") as never, end: 8192, type: "usable" }]),
    ],
    ["new MemoryMap(null)", () => new MemoryMap(null as never)],
    ["new MemoryMap(holes)", () => new MemoryMap(holes as never)],
    ["parseE820(5)", () => parseE820(5 as never)],
    ["parseSysfsDump(5)", () => parseSysfsDump(5 as never)],
    ["detectMemoryMapFormat(5)", () => detectMemoryMapFormat(5 as never)],
    ["parseMemoryMap(null)", () => parseMemoryMap(null as never)],
    ["readSysfsMemmap({ directory: 5 })", () => readSysfsMemmap({ directory: 5 as never })],
    // Sorted by directory number before this was checked: a TypeError.
    [
      "parseSysfsMemmap([null, entry])",
      () =>
        parseSysfsMemmap([null, { name: "0", start: "0x0", end: "0xfff", type: "RAM" }] as never),
    ],
  ];
  for (const [what, call] of calls) assert.throws(call, MemoryMapError, what);
  // A getter answers once: what was checked is what is used.
  let reads = 0;
  const shifty = {
    start: 0x100000,
    get end() {
      return reads++ === 0 ? 0x300000 : 2 ** 60;
    },
    type: "usable" as const,
  };
  const { usable } = normalizeMemoryMap([shifty], { mmapMinAddress: 0 });
  assert.equal(reads, 1);
  assert.deepEqual(usable, [{ start: 0x100000, length: 0x200000 }]);
});

Deno.test("normalizeMemoryMap carves reservations that span, nest and trail the usable runs as a brute-force model does", () => {
  const random = new Random(0x7e5);
  for (let round = 0; round < 40; round++) {
    const page = 4096;
    const entries = Array.from({ length: random.int(1, 30) }, (_, i) => ({
      start: (i * 64 + random.int(0, 8)) * page,
      end: (i * 64 + random.int(16, 63)) * page,
      type: "usable" as const,
    }));
    const reservations = Array.from({ length: random.int(0, 30) }, (_, i) => ({
      start: random.int(0, 64 * 32) * page,
      length: random.int(1, i % 5 === 0 ? 64 * 20 : 20) * page,
      label: `r${i}`,
    }));
    const { usable } = normalizeMemoryMap(entries, {
      reservations,
      mmapMinAddress: 0,
      minRegionBytes: 1,
    });
    // Page by page: usable when an entry covers it and no reservation does.
    const expected: { start: number; length: number }[] = [];
    for (const entry of entries) {
      for (let at = Math.max(entry.start, page); at < entry.end; at += page) {
        if (reservations.some((r) => at >= r.start && at < r.start + r.length)) continue;
        const last = expected.at(-1);
        if (last !== undefined && last.start + last.length === at) last.length += page;
        else expected.push({ start: at, length: page });
      }
    }
    assert.deepEqual(usable, expected, `round ${round}`);
  }
});

Deno.test("readSysfsMemmap names the file an entry directory lacks", () => {
  const directory = Deno.makeTempDirSync();
  try {
    Deno.mkdirSync(`${directory}/0`);
    Deno.writeTextFileSync(`${directory}/0/start`, "0x100000\n");
    Deno.writeTextFileSync(`${directory}/0/end`, "0x1fffff\n");
    assert.throws(() => readSysfsMemmap({ directory }), MemoryMapError, `${directory}/0/type`);
  } finally {
    Deno.removeSync(directory, { recursive: true });
  }
});

Deno.test({
  name: "mapIdentity refuses ranges past 2^53 and entries that are no ranges",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    for (
      const ranges of [
        [{ start: 2 ** 53 - 4096, length: 8192 }],
        [{ start: 2 ** 53, length: 4096 }],
        [null],
        [undefined, { start: 80 * GIB, length: MIB }],
      ]
    ) {
      assert.throws(() => mapIdentity(ranges as never), InvalidMemoryError, JSON.stringify(ranges));
    }
    // Options are the caller's mistake, not a failed mapping; null means none.
    const range = [{ start: 81 * GIB, length: MIB }];
    assert.throws(() => mapIdentity(range, { relocationAttemptsMax: -1 }), InvalidOptionError);
    mapIdentity(range, null as never).close();
  },
});

Deno.test({
  name:
    "identity memory maps the gaps in its window: reads there see zeros, checks report forged links there",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 73 * GIB;
    using memory = mapIdentity([{ start: base, length: 2 * MIB }, {
      start: base + 8 * MIB,
      length: 2 * MIB,
    }]);
    assert.deepEqual(memory.mappings.map((m) => m.kind), ["identity", "identity"]);
    using heap = new PhysicalAllocator(memory);
    heap.alloc(5000);
    const b = heap.alloc(5000);
    heap.alloc(5000);
    const stale = heap.bytes(b);
    // The window's buffer spans the gap: reading it there reads a zero page, not unmapped memory.
    assert.equal(new Uint8Array(stale.buffer)[4 * MIB], 0);
    // No other mapping can land in the gap and be reached through that buffer.
    using other = mapIdentity([{ start: base + 4 * MIB, length: MIB }]);
    assert.equal(other.mappings[0].kind, "relocated");
    // A use-after-free write points the freed block's link into the gap.
    heap.free(b);
    new DataView(stale.buffer, stale.byteOffset).setBigUint64(0, BigInt(base + 4 * MIB + 16), true);
    assert.throws(() => heap.check(), { code: "HEAP_CORRUPTION" });
  },
});

Deno.test({
  name:
    "identity memory maps a gap around what another mapping holds of it, and unmaps it all at close",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 74 * GIB;
    // Another heap's memory in the middle of the gap, mapped first.
    const blocker = mapIdentity([{ start: base + 4 * MIB, length: MIB }]);
    assert.equal(blocker.mappings[0].kind, "identity");
    const memory = mapIdentity([{ start: base, length: MIB }, {
      start: base + 8 * MIB,
      length: MIB,
    }]);
    assert.deepEqual(memory.mappings.map((m) => m.kind), ["identity", "identity"]);
    const window = new Uint8Array(memory.regions[0].bytes.buffer);
    // Both sides of the blocker are mapped (zeros), the blocker's own bytes are its own.
    blocker.regions[0].bytes[0] = 7;
    for (const offset of [MIB, 4 * MIB - 1, 4 * MIB, 5 * MIB, 8 * MIB - 1]) {
      assert.equal(window[offset], offset === 4 * MIB ? 7 : 0, `offset ${offset}`);
    }
    memory.close();
    blocker.close();
    // Everything went back: the same addresses map at their place again.
    using again = mapIdentity([{ start: base + 2 * MIB, length: MIB }]);
    assert.equal(again.mappings[0].kind, "identity");
  },
});
