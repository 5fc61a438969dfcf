/**
 * A hostile user of the public API, fifth round: what the earlier rounds
 * touch least. Firmware memory maps in hostile text and objects (numbers past
 * 2^53, negative, fractional and hex-with-garbage values, BOMs, CRLF, NUL
 * bytes, nested and overlapping entries, thousands of entries, reservations
 * that leave slivers) are refused with a `MemoryMapError` naming the value or
 * normalised into sorted, disjoint, page-aligned ranges from which a heap
 * hands out no reserved or absent byte; identity-mapped memory over odd,
 * adjacent and already mapped ranges, closed under its heap or disposed with
 * `using`; `alloc(size, align)` for every alignment from 8 to 2^30 over sizes
 * that land in slabs, page runs and blocks; heaps over resizable and
 * transferred ArrayBuffers; and the books (`stats()`, its per-layer split,
 * `blocks()`, `layerRuns()`) after refused calls and random mixes of every
 * public call, against a model that fills every payload with a pattern.
 */
import assert from "node:assert/strict";
import {
  AllocatorClosedError,
  AllocatorError,
  bufferMemory,
  InvalidMemoryError,
  mapIdentity,
  MappingFailedError,
  MEMORY_TYPES,
  MemoryDetachedError,
  MemoryInUseError,
  MemoryMap,
  type MemoryMapEntry,
  MemoryMapError,
  normalizeMemoryMap,
  type ObjectCache,
  parseAddress,
  parseE820,
  parseMemoryMapJson,
  parseSysfsDump,
  parseSysfsMemmap,
  PhysicalAllocator,
} from "../mod.ts";
import { CAN_MAP_IDENTITY } from "./support/identity.ts";
import { Random } from "./support/random.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const PAGE_BYTES = 4096;

/** Asserts that `call` throws a MemoryMapError whose message names `value`. */
function assertMapError(what: string, call: () => unknown, value: string): void {
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof MemoryMapError, `${what}: ${String(error)}`);
    assert.equal(error.code, "MEMORY_MAP_INVALID", what);
    assert.ok(error.message.includes(value), `${what}: "${error.message}" does not name ${value}`);
    return true;
  });
}

Deno.test("memory map parsers refuse hostile numbers with MemoryMapError naming the value", () => {
  const addresses = ["0x", "0x1_000", "1e3", "-1", "+1", "0x-1", "1.5", "0x1.8", "0b101", "0o17"];
  for (const text of [...addresses, "Infinity", "NaN", "١٢", "0x1g", "0x10 garbage"]) {
    assertMapError(`parseAddress(${JSON.stringify(text)})`, () => parseAddress(text, "w"), text);
  }
  for (const text of ["0x10\u0000", "\u00000x10"]) {
    assertMapError(`parseAddress with a NUL byte`, () => parseAddress(text, "line 9"), "line 9");
  }
  for (const text of ["9007199254740992", "0x20000000000000", "0xffffffffffffffff"]) {
    assertMapError(`parseAddress(${text})`, () => parseAddress(text, "w"), `${text} is past 2^53`);
  }
  assert.equal(parseAddress("0x1fffffffffffff", "w"), 2 ** 53 - 1);
  assert.equal(parseAddress("0x" + "0".repeat(100) + "1", "w"), 1, "leading zeros are not a size");

  const json: [unknown, string][] = [
    [[{ start: -4096, length: 8192, type: "usable" }], "-4096"],
    [[{ start: 0.5, length: 8192, type: "usable" }], "0.5"],
    [[{ start: NaN, length: 8192, type: "usable" }], "NaN"],
    [[{ start: Infinity, length: 8192, type: "usable" }], "Infinity"],
    [[{ start: 0, length: 2 ** 64, type: "usable" }], "18446744073709552000"],
    [[{ start: 0, length: 0, type: "usable" }], '"length" is 0'],
    [[{ start: 0, end: -1, type: "usable" }], "-1"],
    [[{ start: 0, end: 2 ** 53, type: "usable" }], "9007199254740992"],
    [[{ start: 2 ** 52, length: 2 ** 52, type: "usable" }], "past 2^53"],
    [[{ start: "0x10 garbage", length: 4096, type: "usable" }], "0x10 garbage"],
    [[{ start: 1n, length: 4096, type: "usable" }], "1n"],
    [[{ start: true, length: 4096, type: "usable" }], "true"],
    [[{ start: [16], length: 4096, type: "usable" }], "an array"],
    [[{ start: { valueOf: () => 16 }, length: 4096, type: "usable" }], "an object"],
    [[{ start: 0, length: 4096, type: "usable", origin: "x" }], '"origin"'],
    [JSON.parse('[{"start":0,"length":4096,"type":"usable","__proto__":{}}]'), '"__proto__"'],
    [[{ start: 0, end: 5, length: 5, type: "usable" }], '"end" and "length"'],
    [[null], "null"],
    [{ entries: [] }, "an object"],
    ['[{"start":0,"length":4096,"type":"usable"}]\u0000', "JSON"],
  ];
  for (const [value, named] of json) {
    assertMapError(`parseMemoryMapJson(${String(value)})`, () => parseMemoryMapJson(value), named);
  }

  const e820: [string, string][] = [
    ["BIOS-e820: [mem 0x1g-0x2000] usable", "0x1g"],
    ["BIOS-e820: [mem 0x1000-0x2000g] usable", "0x2000g"],
    ["BIOS-e820: [mem -0x1000-0x2000] usable", "-0x1000"],
    ["BIOS-e820: [mem 0x100000-0xfffff] usable", "0xfffff"],
    ["BIOS-e820: [mem 0x0-0xffffffffffffffff] reserved", "0xffffffffffffffff"],
    ["BIOS-e820: [mem 100000-1fffff] usable", "1fffff"],
    ["BIOS-e820: [mem 0x100000-0x1fffff usable", "[mem 0x100000-0x1fffff usable"],
    ["BIOS-e820: 0000000000100000 - 00000000000f0000 (usable)", "0xeffff"],
  ];
  for (const [text, named] of e820) {
    assertMapError(`parseE820(${text})`, () => parseE820(text), named);
  }

  const sysfs: [string, string][] = [
    ["0 0x0 0x9fbff\u0000System RAM\n", "memmap/0"],
    ["0 0x1000 0xffe System RAM\n", "0xffe"],
    ["0 0x0 0xffffffffffffffff Reserved\n", "0xffffffffffffffff"],
    ["3 0x0 0x9fbff    \n", "line 1"],
  ];
  for (const [text, named] of sysfs) {
    assertMapError(
      `sysfs ${JSON.stringify(text)}`,
      () => parseSysfsMemmap(parseSysfsDump(text)),
      named,
    );
  }
  assertMapError(
    "a sysfs start that is not text",
    () => parseSysfsMemmap([{ name: "0", start: 0 as never, end: "0xfff", type: "System RAM" }]),
    "number 0",
  );
});

Deno.test("CRLF, BOMs, tabs, NUL bytes and duplicate keys never make reserved memory usable", () => {
  const usableAt = (entries: MemoryMapEntry[]) => entries.map((e) => [e.start, e.end, e.type]);
  const lines = "BIOS-e820: [mem 0x0000000000100000-0x00000000001fffff] usable\r\n" +
    "BIOS-e820: [mem 0x0000000000200000-0x00000000002fffff]\treserved\r\n";
  assert.deepEqual(usableAt(parseE820(lines)), [
    [0x100000, 0x200000, "usable"],
    [0x200000, 0x300000, "reserved"],
  ]);
  assert.deepEqual(usableAt(parseE820("\ufeff" + lines)), usableAt(parseE820(lines)));
  // A NUL byte or a second entry glued to a line's type leaves a type nobody knows: not usable.
  const glued = "BIOS-e820: [mem 0x100000-0x1fffff] usable\u0000BIOS-e820: [mem 0x0-0xfff] usable";
  assert.deepEqual(usableAt(parseE820(glued)), [[0x100000, 0x200000, "unknown"]]);
  const sysfs = "\ufeff0 0x0 0x9fbff System RAM\r\n1\t0x100000\t0x1fffff\tSystem RAM\u0000\r\n";
  assert.deepEqual(usableAt(parseSysfsMemmap(parseSysfsDump(sysfs))), [
    [0, 0x9fc00, "usable"],
    [0x100000, 0x200000, "unknown"],
  ]);
  // JSON.parse keeps the last of two equal keys; the entry is read once, as parsed.
  const twice = '[{"start":0,"length":4096,"type":"usable","start":8192}]\r\n';
  assert.deepEqual(usableAt(parseMemoryMapJson(twice)), [[8192, 12288, "usable"]]);
  for (const type of ["__proto__", "toString", "constructor", "hasOwnProperty"]) {
    const [entry] = parseMemoryMapJson([{ start: 0x100000, length: 0x100000, type }]);
    assert.equal(entry.type, "unknown", type);
    assertMapError(
      `normalizeMemoryMap() of type ${type}`,
      () => normalizeMemoryMap([{ start: 0x100000, end: 0x200000, type: type as never }]),
      `"${type}"`,
    );
  }
  // A getter is read once: the entry keeps the value it first gave.
  let reads = 0;
  const [entry] = parseMemoryMapJson([{
    get start() {
      return reads++ === 0 ? 0x100000 : 0x200000;
    },
    length: 0x100000,
    type: "usable",
  }]);
  assert.deepEqual([entry.start, entry.end, reads], [0x100000, 0x200000, 1]);
});

Deno.test("malformed entries, reservations and options are refused with MemoryMapError naming them", () => {
  const usable = (start: number, end: number): MemoryMapEntry => ({ start, end, type: "usable" });
  const entries: [MemoryMapEntry, string][] = [
    [usable(NaN, 0x1000), "NaN"],
    [usable(0x2000, 0x1000), "0x1000"],
    [usable(0x2000, 0x2000), "0x2000"],
    [usable(8192.5, 0x3000), "8192.5"],
    [usable(0, 2 ** 53), "9007199254740992"],
    [usable(-4096, 0x100000), "-4096"],
    [{ start: 0, end: 4096, type: "ram" as never }, '"ram"'],
  ];
  for (const [entry, named] of entries) {
    assertMapError(`new MemoryMap(${named})`, () => new MemoryMap([entry]), named);
    assertMapError(`normalizeMemoryMap(${named})`, () => normalizeMemoryMap([entry]), named);
  }
  const map = new MemoryMap([usable(0x100000, 0x1000000)]);
  const reservations: [number, number, unknown, string][] = [
    [NaN, 4096, "x", "NaN"],
    [-4096, 8192, "x", "-4096"],
    [0x100000, 0, "x", "length 0"],
    [0x100000, 4096.5, "x", "4096.5"],
    [2 ** 53 - 4096, 8192, "x", "past 2^53"],
    [0x100000, Infinity, "x", "Infinity"],
    [0x100000, 4096, "", '""'],
    [0x100000, 4096, null, "null"],
  ];
  for (const [start, length, label, named] of reservations) {
    assertMapError(`reserve(${named})`, () => map.reserve(start, length, label as string), named);
  }
  assert.equal(map.reservations.length, 0, "a refused reservation is not kept");
  const options: [string, unknown, string][] = [
    ["pageBytes", 3, "pageBytes 3"],
    ["pageBytes", 0, "pageBytes 0"],
    ["pageBytes", NaN, "pageBytes NaN"],
    ["mmapMinAddress", -1, "mmapMinAddress -1"],
    ["mmapMinAddress", 0.5, "mmapMinAddress 0.5"],
    ["minRegionBytes", 0, "minRegionBytes 0"],
    ["minRegionBytes", 2 ** 60, "minRegionBytes"],
  ];
  for (const [key, value, named] of options) {
    assertMapError(
      `normalize ${key} ${String(value)}`,
      () => map.normalize({ [key]: value }),
      named,
    );
  }
  assert.deepEqual(map.normalize().usable, [{ start: 0x100000, length: 0xf00000 }]);
});

/** A random map over the first 16 MiB: usable and other types, nested and overlapping. */
function randomMap(random: Random): { entries: MemoryMapEntry[]; reserved: [number, number][] } {
  const spanBytes = 16 * MIB;
  const entries: MemoryMapEntry[] = [];
  for (let i = random.int(1, 30); i > 0; i--) {
    const start = random.int(0, 3) === 0
      ? random.int(0, spanBytes)
      : random.int(0, spanBytes / PAGE_BYTES) * PAGE_BYTES;
    const lengthBytes = random.int(0, 2) === 0 ? random.int(1, 8192) : random.int(1, spanBytes / 4);
    const type = random.int(0, 2) === 0 ? random.pick(MEMORY_TYPES) : "usable";
    entries.push({ start, end: start + lengthBytes, type });
  }
  const reserved: [number, number][] = [];
  for (let i = random.int(0, 4); i > 0; i--) {
    const start = random.int(0, spanBytes);
    reserved.push([start, start + random.int(1, random.int(0, 1) ? 5000 : spanBytes / 8)]);
  }
  return { entries, reserved };
}

Deno.test("random nested and overlapping maps normalise to disjoint pages a heap keeps to", () => {
  const random = new Random(5005);
  for (let iteration = 0; iteration < 120; iteration++) {
    const { entries, reserved } = randomMap(random);
    const map = new MemoryMap(entries);
    reserved.forEach(([start, end], i) => map.reserve(start, end - start, `r${i}`));
    const { usable, report, resolved } = map.normalize({
      mmapMinAddress: PAGE_BYTES * random.int(0, 20),
    });
    const tag = `iteration ${iteration}`;
    const allowed = (address: number) =>
      entries.some((e) => e.type === "usable" && e.start <= address && address < e.end) &&
      !entries.some((e) => e.type !== "usable" && e.start <= address && address < e.end) &&
      !reserved.some(([start, end]) => start <= address && address < end);
    let previousEnd = -1;
    for (const range of usable) {
      assert.equal(range.start % PAGE_BYTES, 0, tag);
      assert.equal(range.length % PAGE_BYTES, 0, tag);
      assert.ok(range.length > 0 && range.start > previousEnd, `${tag}: sorted, disjoint, apart`);
      previousEnd = range.start + range.length;
      for (let address = range.start; address < previousEnd; address += 512) {
        assert.ok(allowed(address) && allowed(address + 511), `${tag}: 0x${address.toString(16)}`);
      }
    }
    const accounted = report.usableBytes + report.reservedBytes + report.clippedBytes +
      report.droppedBytes;
    assert.equal(accounted, report.coveredBytes, tag);
    assert.equal(report.inputBytes - report.overlapBytes, report.coveredBytes, tag);
    assert.equal(usable.reduce((sum, r) => sum + r.length, 0), report.usableBytes, tag);
    for (let i = 1; i < resolved.length; i++) assert.ok(resolved[i].start >= resolved[i - 1].end);
    if (usable.length === 0) continue;
    using heap = new PhysicalAllocator(bufferMemory(usable));
    const inUsable = (address: number, sizeBytes: number) =>
      usable.some((r) => r.start <= address && address + sizeBytes <= r.start + r.length);
    const live: [number, number][] = [];
    for (let step = 0; step < 150; step++) {
      if (live.length > 0 && random.int(0, 9) < 4) {
        heap.free(live.splice(random.int(0, live.length - 1), 1)[0][0]);
        continue;
      }
      const sizeBytes = random.pick([8, 24, 100, 300, 4096, 5000, 65536, MIB]);
      const alignBytes = random.pick([8, 16, 64, 4096, 65536]);
      const address = heap.tryAlloc(sizeBytes, alignBytes);
      if (address === 0) continue;
      assert.equal(address % alignBytes, 0, tag);
      assert.ok(inUsable(address, sizeBytes), `${tag}: 0x${address.toString(16)} outside`);
      for (const [other, otherBytes] of live) {
        assert.ok(address >= other + otherBytes || other >= address + sizeBytes, `${tag}: overlap`);
      }
      live.push([address, sizeBytes]);
    }
    for (const block of heap.blocks()) assert.ok(inUsable(block.address, block.sizeBytes), tag);
    heap.check();
  }
});

Deno.test("thousands of entries and reservations that leave slivers keep every byte accounted", () => {
  // Reservations a few bytes long, one at each end of a usable range, a page less one byte.
  const sliver = normalizeMemoryMap([{ start: 0x100000, end: 0x200000, type: "usable" }], {
    reservations: [
      { start: 0x100064, length: 8000, label: "sliver" },
      { start: 0x180000, length: 1, label: "one byte" },
      { start: 0x1ff000, length: 4095, label: "tail" },
    ],
  });
  assert.deepEqual(sliver.usable, [
    { start: 0x102000, length: 0x7e000 },
    { start: 0x181000, length: 0x7e000 },
  ]);
  // Firmware slivers inside one usable range cost their pages.
  const firmware = normalizeMemoryMap([
    { start: 0x100000, end: 0x200000, type: "usable" },
    { start: 0x100800, end: 0x100900, type: "reserved" },
    { start: 0x101000, end: 0x101010, type: "nvs" },
    { start: 0x1fffff, end: 0x200001, type: "acpi" },
  ]);
  assert.deepEqual(firmware.usable, [{ start: 0x102000, length: 0xfd000 }]);

  const entries: MemoryMapEntry[] = [];
  const map = (() => {
    for (let i = 0; i < 5000; i++) {
      const start = 0x100000 + i * 0x3000;
      entries.push({ start, end: start + 0x2000, type: i % 7 === 3 ? "reserved" : "usable" });
    }
    return new MemoryMap(entries);
  })();
  for (let i = 0; i < 2500; i++) map.reserve(0x100000 + i * 0x3000 + 0x800, 16, `k${i}`);
  const { usable, report } = map.normalize();
  const usableEntries = entries.filter((e) => e.type === "usable").length;
  assert.equal(usable.length, usableEntries, "no range merges across the 4 KiB gaps");
  for (const range of usable) {
    const i = (range.start - 0x100000 - (range.start - 0x100000) % 0x3000) / 0x3000;
    assert.equal(range.length, i < 2500 ? PAGE_BYTES : 2 * PAGE_BYTES, `entry ${i}`);
  }
  assert.equal(
    report.usableBytes + report.reservedBytes + report.clippedBytes + report.droppedBytes,
    report.coveredBytes,
  );
  using heap = new PhysicalAllocator(bufferMemory(usable.slice(0, 1000)));
  let count = 0;
  for (let address = heap.tryAlloc(64); address !== 0; address = heap.tryAlloc(64)) count++;
  assert.ok(count > 1000 * 40, `${count} allocations of 64 bytes in 1000 regions`);
  heap.check();
});

Deno.test("usable slivers of a few bytes are skipped by the heap and never handed out", () => {
  const reservations = Array.from({ length: 200 }, (_, i) => ({
    start: 0x100000 + i * 40 + 8 + (i % 5) * 4,
    length: 16 + (i % 3) * 8,
    label: `r${i}`,
  }));
  for (const pageBytes of [1, 8, 16]) {
    const { usable } = normalizeMemoryMap([
      { start: 0x100000, end: 0x100000 + 200 * 40 + 64, type: "usable" },
      { start: 0x200000, end: 0x400000, type: "usable" },
    ], { pageBytes, minRegionBytes: 1, mmapMinAddress: 0, reservations });
    assert.ok(usable.length > 80, `pageBytes ${pageBytes}: ${usable.length} ranges`);
    using heap = new PhysicalAllocator(bufferMemory(usable));
    const stats = heap.stats();
    assert.ok(stats.skippedRegions > 80, `pageBytes ${pageBytes}: skipped ${stats.skippedRegions}`);
    assert.equal(
      stats.totalBytes,
      stats.freeBytes + stats.usedBytes + stats.overheadBytes + stats.skippedBytes,
    );
    const addresses: number[] = [];
    for (let a = heap.tryAlloc(1); a !== 0; a = heap.tryAlloc(1)) addresses.push(a);
    for (const address of addresses) {
      assert.ok(usable.some((r) => r.start <= address && address < r.start + r.length));
    }
    heap.check();
    for (const address of addresses) heap.free(address);
    heap.check();
  }
});

Deno.test("blocks() and layerRuns() walks end cleanly while the heap changes under them", () => {
  for (let seed = 1; seed <= 40; seed++) {
    const random = new Random(seed);
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 * MIB), { layers: seed % 2 === 0 });
    const sizes = [24, 100, 600, 5000, 70000];
    const live: number[] = [];
    for (let i = 0; i < 200; i++) live.push(heap.alloc(random.pick(sizes)));
    for (let i = 0; i < 60; i++) heap.free(live.splice(random.int(0, live.length - 1), 1)[0]);
    const walk: Iterable<unknown> = seed % 4 < 2 ? heap.blocks() : heap.layerRuns();
    let steps = 0;
    for (const _ of walk) {
      assert.ok(++steps < 100_000, `seed ${seed}: the walk ends`);
      if (steps % 5 !== 0) continue;
      for (let k = 0; k < 5; k++) {
        if (live.length > 0 && random.int(0, 1) === 1) {
          heap.free(live.splice(random.int(0, live.length - 1), 1)[0]);
        } else {
          const address = heap.tryAlloc(random.pick(sizes));
          if (address !== 0) live.push(address);
        }
      }
    }
    heap.check();
  }
});

Deno.test({
  name: "mapIdentity() refuses odd ranges, maps adjacent ones and relocates over a mapped one",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 77 * GIB;
    const odd: [string, { start: number; length: number }[], string][] = [
      ["zero length", [{ start: base, length: 0 }], "length 0"],
      ["unaligned start", [{ start: base + 8, length: 4096 }], "0x1340000008"],
      ["unaligned length", [{ start: base, length: 4095 }], "4095"],
      ["negative start", [{ start: -4096, length: 4096 }], "-4096"],
      ["NaN length", [{ start: base, length: NaN }], "NaN"],
      [
        "overlap",
        [{ start: base, length: 8192 }, { start: base + 4096, length: 8192 }],
        "overlaps",
      ],
      ["duplicate", [{ start: base, length: 4096 }, { start: base, length: 4096 }], "overlaps"],
      ["string start", [{ start: "0x1340000000" as never, length: 4096 }], "0x1340000000"],
    ];
    for (const [what, ranges, named] of odd) {
      assert.throws(() => mapIdentity(ranges), (error: unknown) => {
        assert.ok(error instanceof InvalidMemoryError, `${what}: ${String(error)}`);
        assert.ok(error.message.includes(named), `${what}: ${error.message}`);
        return true;
      });
    }
    // Adjacent ranges, given in reverse, are two regions of one window.
    {
      using memory = mapIdentity([{ start: base + 64 * KIB, length: MIB }, {
        start: base,
        length: 64 * KIB,
      }]);
      assert.deepEqual(memory.mappings.map((m) => m.physicalBase), [base + 64 * KIB, base]);
      using heap = new PhysicalAllocator(memory);
      const a = heap.alloc(60 * KIB);
      const b = heap.alloc(60 * KIB);
      heap.bytes(a).fill(1);
      heap.bytes(b).fill(2);
      assert.equal(heap.bytes(a)[60 * KIB - 1], 1);
      heap.check();
    }
    // A range another heap's memory maps already: relocated, or refused without relocation.
    using first = mapIdentity([{ start: base, length: MIB }]);
    using firstHeap = new PhysicalAllocator(first);
    const kept = firstHeap.alloc(100);
    firstHeap.bytes(kept).fill(0x5a);
    if (first.mappings[0].kind === "identity") {
      using second = mapIdentity([{ start: base + 512 * KIB, length: MIB }]);
      assert.equal(second.mappings[0].kind, "relocated");
      assert.equal(second.mappings[0].physicalBase, base + 512 * KIB);
      assert.equal(second.mappings[0].offsetBytes % (2 * MIB), 0);
      using secondHeap = new PhysicalAllocator(second);
      const moved = secondHeap.alloc(100);
      secondHeap.bytes(moved).fill(0xa5);
      assert.ok(moved >= second.mappings[0].base && moved < second.mappings[0].base + MIB);
      assert.throws(
        () => mapIdentity([{ start: base + 512 * KIB, length: MIB }], { relocate: false }),
        MappingFailedError,
      );
    }
    assert.ok(firstHeap.bytes(kept).every((byte) => byte === 0x5a), "the first heap's bytes stay");
    firstHeap.check();
  },
});

Deno.test({
  name: "mapIdentity() over this process's own memory relocates or refuses, never replaces it",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const buffer = new Uint8Array(MIB);
    buffer.fill(0x77);
    const pointer = Deno.UnsafePointer.of(buffer);
    assert.ok(pointer !== null);
    const address = Number(Deno.UnsafePointer.value(pointer));
    const start = Math.ceil(address / PAGE_BYTES) * PAGE_BYTES; // a page inside the buffer
    assert.throws(
      () => mapIdentity([{ start, length: 2 * PAGE_BYTES }], { relocate: false }),
      (error: unknown) => error instanceof MappingFailedError && /EEXIST/.test(error.message),
    );
    {
      using memory = mapIdentity([{ start, length: 2 * PAGE_BYTES }]);
      assert.equal(memory.mappings[0].kind, "relocated");
      assert.notEqual(memory.regions[0].base, start);
      memory.regions[0].bytes.fill(1);
    }
    assert.ok(buffer.every((byte) => byte === 0x77), "the buffer's bytes were never touched");
  },
});

Deno.test({
  name: "identity memory closed under its heap, or disposed, makes every call AllocatorClosedError",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const memory = mapIdentity([{ start: 78 * GIB, length: 4 * MIB }]);
    const heap = new PhysicalAllocator(memory);
    const block = heap.alloc(100);
    const page = heap.alloc(4096, 4096);
    const big = heap.alloc(70000);
    const cache = heap.createCache("inode", 48);
    const object = cache.alloc();
    const view = heap.bytes(block);
    const walk = heap.blocks();
    walk.next();
    assert.throws(() => new PhysicalAllocator(memory), MemoryInUseError);
    memory.close();
    assert.equal(heap.closed, true);
    assert.equal(view.byteLength, 0, "the view was detached before munmap");
    const calls = [
      ...everyCall(heap, { block, page, cache, object, walk }),
      ["free big", () => heap.free(big)] as [string, () => unknown],
    ];
    for (const [what, call] of calls) {
      assert.throws(call, (error: unknown) => {
        assert.ok(error instanceof AllocatorClosedError, `${what}: ${String(error)}`);
        return true;
      });
    }
    heap.close();
    heap.close();
    // A closed memory cannot carry a new heap (the class of the refusal is not pinned here).
    assert.throws(() => new PhysicalAllocator(memory), AllocatorError);

    let escapedHeap: PhysicalAllocator | undefined;
    {
      using scoped = mapIdentity([{ start: 79 * GIB, length: 2 * MIB }]);
      using scopedHeap = new PhysicalAllocator(scoped);
      scopedHeap.alloc(8);
      escapedHeap = scopedHeap;
      assert.equal(scoped.closed, false);
    }
    assert.equal(escapedHeap.closed, true);
    assert.throws(() => escapedHeap.alloc(8), AllocatorClosedError);
    assert.throws(() => escapedHeap.stats(), AllocatorClosedError);
  },
});

Deno.test({
  name: "addresses in the unmapped hole between identity ranges are refused without a read",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 82 * GIB;
    for (
      const options of [{}, { fastPath: false }, { layers: false }, {
        policy: "first-fit" as const,
      }]
    ) {
      const what = JSON.stringify(options);
      using memory = mapIdentity([{ start: base, length: 2 * MIB }, {
        start: base + 8 * MIB,
        length: 2 * MIB,
      }]);
      using heap = new PhysicalAllocator(memory, options);
      for (let i = 0; i < 20; i++) heap.alloc(100 + i * 300);
      const before = JSON.stringify(heap.stats());
      // Reading any of these addresses would kill the process: the hole is not mapped.
      for (const offset of [2 * MIB, 2 * MIB + 16, 4 * MIB + 16, 4 * MIB + 4096, 8 * MIB - 16]) {
        const address = base + offset;
        const calls: [string, () => unknown][] = [
          ["free", () => heap.free(address)],
          ["realloc", () => heap.realloc(address, 64)],
          ["bytes", () => heap.bytes(address)],
          ["sizeOf", () => heap.sizeOf(address)],
          ["capacityOf", () => heap.capacityOf(address)],
          ["freePages", () => heap.freePages(address)],
        ];
        for (const [name, call] of calls) {
          assert.throws(call, (error: unknown) => {
            assert.ok(
              error instanceof AllocatorError,
              `${what} ${name}(0x${address.toString(16)})`,
            );
            assert.ok(error.message.includes(address.toString(16)), `${what}: ${error.message}`);
            return true;
          });
        }
      }
      assert.equal(JSON.stringify(heap.stats()), before, what);
      heap.check();
    }
  },
});

Deno.test({
  name:
    "a freed block's back link or footer forged into an identity hole is reported, not followed",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    const base = 83 * GIB;
    const hole = base + 4 * MIB + 16;
    for (const options of [{}, { fastPath: false }, { layers: false }]) {
      const what = JSON.stringify(options);
      {
        using memory = mapIdentity([{ start: base, length: 2 * MIB }, {
          start: base + 8 * MIB,
          length: 2 * MIB,
        }]);
        using heap = new PhysicalAllocator(memory, options);
        heap.alloc(5000);
        const b = heap.alloc(5000);
        const c = heap.alloc(5000);
        const stale = heap.bytes(b);
        heap.free(b);
        new DataView(stale.buffer, stale.byteOffset).setBigUint64(8, BigInt(hole), true); // prev
        const isCorruption = (error: unknown) =>
          error instanceof AllocatorError && error.code === "HEAP_CORRUPTION";
        assert.throws(() => heap.alloc(5000), isCorruption, what);
        assert.throws(() => heap.free(c), isCorruption, what);
        assert.throws(() => heap.check(), isCorruption, what);
      }
      {
        // The footer of a free block in the second range, forged so that its successor's
        // predecessor would start in the hole.
        using memory = mapIdentity([{ start: base, length: 2 * MIB }, {
          start: base + 8 * MIB,
          length: 2 * MIB,
        }]);
        using heap = new PhysicalAllocator(memory, options);
        while (heap.stats().largestFreeBytes > 2 * MIB - 64 * KIB) heap.alloc(MIB - 64 * KIB);
        for (let a = heap.tryAlloc(4000); a !== 0 && a < base + 8 * MIB; a = heap.tryAlloc(4000));
        const b = heap.alloc(5000);
        const c = heap.alloc(5000);
        assert.ok(b > base + 8 * MIB, `${what}: b lies in the second range`);
        const stale = heap.bytes(b);
        heap.free(b);
        const footerOffset = c - 16 - 8 - b;
        const forged = BigInt(c - 16 - (base + 4 * MIB));
        new DataView(stale.buffer, stale.byteOffset).setBigUint64(footerOffset, forged, true);
        assert.throws(
          () => heap.free(c),
          (error: unknown) => error instanceof AllocatorError && error.code === "HEAP_CORRUPTION",
          what,
        );
      }
    }
  },
});

Deno.test({
  name: "a second heap over identity memory with reinitialize closes the first",
  ignore: !CAN_MAP_IDENTITY,
  fn() {
    using memory = mapIdentity([{ start: 80 * GIB, length: 2 * MIB }]);
    const first = new PhysicalAllocator(memory);
    first.alloc(64);
    assert.throws(() => new PhysicalAllocator({ regions: [...memory.regions] }), MemoryInUseError);
    const region = memory.regions[0];
    const inner = { base: region.base + 4096, bytes: region.bytes.subarray(4096, 8192) };
    assert.throws(() => new PhysicalAllocator({ regions: [inner] }), MemoryInUseError);
    const second = new PhysicalAllocator(memory, { reinitialize: true });
    assert.equal(first.closed, true);
    assert.throws(() => first.alloc(8), AllocatorClosedError);
    second.free(second.alloc(64));
    second.check();
  },
});

/** Whether every 251st byte of `view` and its last one are `byte`. */
function holds(view: Uint8Array, byte: number): boolean {
  for (let i = 0; i < view.length; i += 251) if (view[i] !== byte) return false;
  return view[view.length - 1] === byte;
}

const ALIGNS_BYTES: readonly number[] = Array.from({ length: 28 }, (_, i) => 8 * 2 ** i);
const ROUTED_SIZES_BYTES: readonly number[] = [
  1,
  24,
  256,
  257,
  300,
  512,
  513,
  4095,
  4096,
  4097,
  8191,
  8192,
  12288,
  65535,
  65536,
  131072,
  MIB,
  MIB + 1,
  4 * MIB,
];

Deno.test("alloc(size, align) from 8 to 2^30 over slabs, page runs and blocks keeps sizes and bytes", () => {
  // TLSF serves an alignment only from a free block longer than it (see repro/ of adversary5):
  // over 40 MiB it is asked for alignments up to 2^25, first-fit for all of them up to 2^30.
  const configs: [object, number][] = [
    [{}, 2 ** 25],
    [{ debug: true }, 2 ** 25],
    [{ fastPath: false }, 2 ** 25],
    [{ policy: "first-fit" }, 2 ** 30],
  ];
  for (const [options, alignBytesMax] of configs) {
    const what = JSON.stringify(options);
    // The window starts 8 MiB below 1 GiB, so a 2^30-aligned payload fits in 40 MiB.
    using heap = PhysicalAllocator.fromBuffer(new Uint8Array(40 * MIB), {
      baseAddress: GIB - 8 * MIB,
      ...options,
    });
    assert.equal(heap.layersActive, true);
    const fresh = JSON.stringify(heap.stats());
    const kinds = new Set<string>();
    let pattern = 1;
    for (const alignBytes of ALIGNS_BYTES.filter((a) => a <= alignBytesMax)) {
      for (const sizeBytes of ROUTED_SIZES_BYTES) {
        const tag = `${what} alloc(${sizeBytes}, ${alignBytes})`;
        const address = heap.alloc(sizeBytes, alignBytes);
        const run = [...heap.layerRuns()].find((r) =>
          r.address <= address && address < r.address + r.sizeBytes
        );
        kinds.add(run?.kind ?? "block");
        assert.equal(address % alignBytes, 0, tag);
        assert.equal(heap.sizeOf(address), sizeBytes, tag);
        assert.ok(heap.capacityOf(address) >= sizeBytes, tag);
        const view = heap.bytes(address);
        assert.equal(view.length, sizeBytes, tag);
        const byte = pattern++ & 0xff;
        view.fill(byte);
        const grownBytes = sizeBytes * 2 + 8;
        const grown = heap.realloc(address, grownBytes);
        assert.equal(grown % heap.defaultAlignBytes, 0, tag);
        assert.equal(heap.sizeOf(grown), grownBytes, tag);
        const grownView = heap.bytes(grown);
        assert.equal(grownView.length, grownBytes, tag);
        assert.ok(holds(grownView.subarray(0, sizeBytes), byte), `${tag}: grown`);
        const shrunkBytes = Math.max(1, sizeBytes >> 1);
        const shrunk = heap.realloc(grown, shrunkBytes);
        assert.equal(shrunk % heap.defaultAlignBytes, 0, tag);
        assert.equal(heap.sizeOf(shrunk), shrunkBytes, tag);
        assert.ok(holds(heap.bytes(shrunk), byte), `${tag}: shrunk`);
        heap.free(shrunk);
        const stats = heap.stats();
        assert.equal(
          stats.totalBytes,
          stats.freeBytes + stats.usedBytes + stats.overheadBytes + stats.skippedBytes,
          tag,
        );
      }
    }
    assert.deepEqual([...kinds].sort(), ["block", "pages", "slab"], `${what}: every layer served`);
    heap.check();
    heap.trim();
    assert.equal(JSON.stringify(heap.stats()), fresh, `${what}: trim() restores the fresh heap`);
  }
});

Deno.test("a realloc that moves keeps the default alignment, not the one asked for", () => {
  using heap = PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB));
  const block = heap.alloc(100, 4096);
  heap.bytes(block).fill(7);
  heap.alloc(8, 4096); // a neighbour, so growing moves
  const moved = heap.realloc(block, 50000);
  assert.notEqual(moved, block);
  assert.equal(moved % heap.defaultAlignBytes, 0);
  assert.ok(heap.bytes(moved).subarray(0, 100).every((b) => b === 7));
  // A block realloc that shrinks stays where it is, with the alignment it had.
  const aligned = heap.alloc(8192, 65536);
  assert.equal(heap.realloc(aligned, 4000), aligned);
  heap.check();
});

Deno.test("a heap over a transferred buffer refuses every call with MemoryDetachedError", () => {
  const buffer = new ArrayBuffer(4 * MIB, { maxByteLength: 16 * MIB });
  const heap = PhysicalAllocator.fromBuffer(buffer);
  const block = heap.alloc(100);
  const page = heap.allocPages(0);
  const cache = heap.createCache("inode", 64);
  const object = cache.alloc();
  const view = heap.bytes(block);
  const walk = heap.blocks();
  walk.next();
  const moved = buffer.transfer(8 * MIB);
  assert.equal(view.byteLength, 0);
  const calls = everyCall(heap, { block, page, cache, object, walk });
  for (const [what, call] of calls) {
    assert.throws(call, (error: unknown) => {
      assert.ok(error instanceof MemoryDetachedError, `${what}: ${String(error)}`);
      assert.equal(error.code, "MEMORY_DETACHED", what);
      assert.ok(error.message.includes("0x1000"), what);
      return true;
    });
  }
  heap.close();
  // The moved bytes still hold the heap nobody closed in them.
  assert.throws(() => PhysicalAllocator.fromBuffer(moved), MemoryInUseError);
  using fresh = PhysicalAllocator.fromBuffer(moved, { reinitialize: true });
  fresh.free(fresh.alloc(8));
});

Deno.test("a heap over a resizable buffer ignores growth and refuses calls while it is shrunk", () => {
  const buffer = new ArrayBuffer(4 * MIB, { maxByteLength: 16 * MIB });
  using heap = PhysicalAllocator.fromBuffer(new Uint8Array(buffer)); // a length-tracking view
  const totalBytes = heap.stats().totalBytes;
  const block = heap.alloc(100);
  buffer.resize(16 * MIB);
  assert.equal(heap.stats().totalBytes, totalBytes, "growth is not the heap's");
  const big = heap.alloc(3 * MIB);
  assert.ok(big + 3 * MIB <= 0x1000 + 4 * MIB);
  assert.equal(heap.tryAlloc(2 * MIB), 0, "the heap is still 4 MiB");
  buffer.resize(MIB);
  for (const call of [() => heap.alloc(8), () => heap.free(block), () => heap.stats()]) {
    assert.throws(call, MemoryDetachedError);
  }

  // A view at an offset survives a shrink that leaves it whole, and refuses one that cuts it.
  const outer = new ArrayBuffer(4 * MIB, { maxByteLength: 8 * MIB });
  using viewHeap = PhysicalAllocator.fromBuffer(new Uint8Array(outer, 4096, 2 * MIB));
  const kept = viewHeap.alloc(100);
  viewHeap.bytes(kept).fill(3);
  outer.resize(4096 + 2 * MIB);
  viewHeap.free(viewHeap.alloc(64));
  assert.equal(viewHeap.bytes(kept)[99], 3);
  viewHeap.check();
  outer.resize(4096 + 2 * MIB - 1);
  assert.throws(() => viewHeap.alloc(8), MemoryDetachedError);
  assert.throws(() => viewHeap.check(), MemoryDetachedError);
});

/** One live allocation of the model. */
interface Live {
  readonly address: number;
  readonly sizeBytes: number;
  readonly pattern: number;
  readonly kind: "alloc" | "pages" | "object";
  readonly cache?: ObjectCache;
}

function fillLive(heap: PhysicalAllocator, live: Live): void {
  const view = heap.bytes(live.address);
  for (let i = 0; i < view.length; i++) view[i] = (live.pattern + i) & 0xff;
}

function verifyLive(heap: PhysicalAllocator, live: Live, tag: string): void {
  const view = heap.bytes(live.address);
  assert.equal(view.length, live.sizeBytes, tag);
  for (let i = 0; i < view.length; i += 61) {
    assert.equal(view[i], (live.pattern + i) & 0xff, `${tag}: 0x${live.address.toString(16)}+${i}`);
  }
  assert.equal(view[view.length - 1], (live.pattern + view.length - 1) & 0xff, tag);
}

function freeLive(heap: PhysicalAllocator, live: Live): void {
  if (live.kind === "pages") heap.freePages(live.address);
  else if (live.kind === "object") live.cache!.free(live.address);
  else heap.free(live.address);
}

/** Proves stats(), its per-layer split, blocks() and layerRuns() agree with each other and the model. */
function assertBooks(heap: PhysicalAllocator, live: readonly Live[], tag: string): void {
  const stats = heap.stats();
  assert.equal(
    stats.totalBytes,
    stats.freeBytes + stats.usedBytes + stats.overheadBytes + stats.skippedBytes,
    `${tag}: total`,
  );
  const layers = stats.layers;
  assert.equal(stats.freeBytes, stats.blocks.freeBytes + (layers?.freeBytes ?? 0), `${tag}: free`);
  assert.equal(stats.usedBytes, stats.blocks.usedBytes + (layers?.usedBytes ?? 0), `${tag}: used`);
  assert.equal(
    stats.overheadBytes,
    stats.blocks.overheadBytes + (layers?.overheadBytes ?? 0),
    `${tag}: overhead`,
  );
  assert.equal(stats.usedBlocks, live.length, `${tag}: usedBlocks`);
  assert.equal(stats.usedBytes, live.reduce((sum, l) => sum + l.sizeBytes, 0), `${tag}: usedBytes`);
  const blocks = [...heap.blocks()];
  const free = blocks.filter((b) => b.free);
  assert.equal(free.length, stats.freeBlocks, `${tag}: freeBlocks`);
  assert.equal(free.reduce((sum, b) => sum + b.sizeBytes - 16, 0), stats.blocks.freeBytes, tag);
  assert.equal(free.reduce((max, b) => Math.max(max, b.sizeBytes - 16), 0), stats.largestFreeBytes);
  if (layers !== null) {
    assert.equal(
      layers.blockBytes,
      layers.usedBytes + layers.freeBytes + layers.overheadBytes,
      tag,
    );
    assert.equal(layers.freeBytes, layers.freeFrames * PAGE_BYTES, tag);
    assert.equal(
      layers.buddyinfo.reduce((sum, n, order) => sum + n * 2 ** order, 0),
      layers.freeFrames,
    );
    assert.equal(
      layers.totalFrames,
      layers.freeFrames + layers.pageFrames + layers.slabFrames,
      tag,
    );
    const runs = [...heap.layerRuns()];
    const bytesOf = (kind: string) =>
      runs.filter((r) => r.kind === kind).reduce((sum, r) => sum + r.sizeBytes, 0);
    assert.equal(bytesOf("free"), layers.freeFrames * PAGE_BYTES, `${tag}: free runs`);
    assert.equal(bytesOf("pages"), layers.pageFrames * PAGE_BYTES, `${tag}: page runs`);
    assert.equal(bytesOf("slab"), layers.slabFrames * PAGE_BYTES, `${tag}: slab runs`);
    assert.equal(new Set(runs.map((r) => r.chunk)).size, layers.chunks, `${tag}: chunks`);
    let slabPages = 0;
    let activeObjects = 0;
    for (const line of layers.slabinfo) {
      assert.equal(line.totalObjects, line.slabs * line.objectsPerSlab, `${tag}: ${line.name}`);
      assert.ok(line.activeObjects <= line.totalObjects && line.activeSlabs <= line.slabs, tag);
      slabPages += line.slabs * line.pagesPerSlab;
      activeObjects += line.activeObjects;
    }
    assert.equal(slabPages, layers.slabFrames, `${tag}: slab pages`);
    const runOf = (address: number) =>
      runs.find((r) => r.address <= address && address < r.address + r.sizeBytes)?.kind;
    assert.equal(live.filter((l) => runOf(l.address) === "slab").length, activeObjects, tag);
    for (const l of live) {
      const kind = runOf(l.address);
      assert.ok(
        kind !== "free" && kind !== "table",
        `${tag}: live 0x${l.address.toString(16)} in ${kind}`,
      );
    }
  }
  const sorted = [...live].sort((a, b) => a.address - b.address);
  for (let i = 1; i < sorted.length; i++) {
    assert.ok(
      sorted[i - 1].address + sorted[i - 1].sizeBytes <= sorted[i].address,
      `${tag}: overlap`,
    );
  }
}

/** Calls that must be refused: each takes the model's live list and returns the call. */
const REFUSED:
  readonly ((heap: PhysicalAllocator, live: Live | undefined, caches: ObjectCache[]) => unknown)[] =
    [
      (heap, l) => heap.free(l ? l.address + 8 : 12345),
      (heap) => heap.alloc(0),
      (heap) => heap.alloc(8, 3),
      (heap, l) => heap.freePages(l ? l.address + 4096 : 4096),
      (heap, l) => heap.realloc(l ? l.address + 1 : 1, 8),
      (heap) => heap.alloc(GIB),
      (heap) => heap.allocPages(11),
      (heap) => heap.allocPages(-1),
      (heap, l) => heap.bytes(l ? l.address : 5, l ? l.sizeBytes + 1 : 1),
      (heap, l, caches) =>
        caches.length > 0 && l && l.cache !== caches[0] ? caches[0].free(l.address) : heap.free(-8),
      (heap) => heap.createCache("", 8),
      (heap) => heap.createCache("x", 8, { align: 8192 }),
    ];

function churn(heap: PhysicalAllocator, name: string, seed: number, steps: number): void {
  const random = new Random(seed);
  const fresh = JSON.stringify(heap.stats());
  const live: Live[] = [];
  const caches: ObjectCache[] = [];
  let pattern = 1;
  for (let step = 0; step < steps; step++) {
    const tag = `${name} step ${step}`;
    const op = random.int(0, 99);
    if (op < 30) {
      const sizeBytes = random.pick([
        random.int(1, 64),
        random.int(1, 512),
        random.int(1, 5000),
        4096 * random.int(1, 4),
        random.int(4095, 4097),
        random.int(60000, 140000),
      ]);
      const alignBytes = random.int(0, 2) > 0 ? 0 : 2 ** random.int(3, 16);
      const address = alignBytes ? heap.tryAlloc(sizeBytes, alignBytes) : heap.tryAlloc(sizeBytes);
      if (address === 0) continue;
      if (alignBytes) assert.equal(address % alignBytes, 0, tag);
      const entry: Live = { address, sizeBytes, pattern: pattern++, kind: "alloc" };
      fillLive(heap, entry);
      live.push(entry);
    } else if (op < 45 && live.length > 0) {
      const [entry] = live.splice(random.int(0, live.length - 1), 1);
      verifyLive(heap, entry, tag);
      freeLive(heap, entry);
    } else if (op < 55 && live.length > 0) {
      const i = random.int(0, live.length - 1);
      const entry = live[i];
      if (entry.kind !== "alloc") continue;
      verifyLive(heap, entry, tag);
      const sizeBytes = random.pick([
        random.int(1, 300),
        entry.sizeBytes * 2,
        Math.max(1, entry.sizeBytes >> 1),
        4096 * random.int(1, 3),
        70000,
      ]);
      let moved: number;
      try {
        moved = heap.realloc(entry.address, sizeBytes);
      } catch (error) {
        assert.ok(error instanceof AllocatorError && error.code === "OUT_OF_MEMORY", String(error));
        verifyLive(heap, entry, `${tag}: after a failed realloc`);
        continue;
      }
      const view = heap.bytes(moved);
      for (let k = 0; k < Math.min(sizeBytes, entry.sizeBytes); k += 61) {
        assert.equal(view[k], (entry.pattern + k) & 0xff, `${tag}: realloc kept byte ${k}`);
      }
      live[i] = { address: moved, sizeBytes, pattern: pattern++, kind: "alloc" };
      fillLive(heap, live[i]);
    } else if (op < 62) {
      const order = random.int(0, 3);
      let address: number;
      try {
        address = heap.allocPages(order);
      } catch (error) {
        assert.ok(error instanceof AllocatorError && error.code === "OUT_OF_MEMORY", String(error));
        continue;
      }
      assert.equal(address % PAGE_BYTES, 0, tag);
      const entry: Live = { address, sizeBytes: 4096 << order, pattern: pattern++, kind: "pages" };
      fillLive(heap, entry);
      live.push(entry);
    } else if (op < 66) {
      if (caches.length < 6) {
        const align = 2 ** random.int(0, 7);
        caches.push(heap.createCache(`c${step}`, random.int(8, 600), { align }));
      }
    } else if (op < 76 && caches.length > 0) {
      const cache = random.pick(caches);
      let address: number;
      try {
        address = cache.alloc();
      } catch (error) {
        assert.ok(error instanceof AllocatorError && error.code === "OUT_OF_MEMORY", String(error));
        continue;
      }
      const entry: Live = {
        address,
        sizeBytes: heap.sizeOf(address),
        pattern: pattern++,
        kind: "object",
        cache,
      };
      fillLive(heap, entry);
      live.push(entry);
    } else if (op < 79 && caches.length > 0) {
      const i = random.int(0, caches.length - 1);
      const inUse = live.some((l) => l.cache === caches[i]);
      if (inUse) {
        assert.throws(
          () => heap.destroyCache(caches[i]),
          (e: unknown) => e instanceof AllocatorError && e.code === "CACHE_IN_USE",
        );
      } else {
        heap.destroyCache(caches[i]);
        caches.splice(i, 1);
      }
    } else if (op < 82) {
      heap.trim();
    } else if (op < 92) {
      const before = JSON.stringify(heap.stats());
      const picked = live.length > 0 ? random.pick(live) : undefined;
      // An address next to a live one may be another live one: then it is no bad address.
      const near = picked &&
          !live.some((l) => [8, 4096, 1].some((d) => l.address === picked.address + d))
        ? picked
        : undefined;
      const call = random.pick(REFUSED);
      assert.throws(() => call(heap, near, caches), (error: unknown) => {
        assert.ok(error instanceof AllocatorError, `${tag}: ${String(error)}`);
        return true;
      });
      assert.equal(JSON.stringify(heap.stats()), before, `${tag}: a refused call changed the heap`);
    } else {
      assertBooks(heap, live, tag);
    }
  }
  assertBooks(heap, live, `${name} end`);
  heap.check();
  for (const entry of live) {
    verifyLive(heap, entry, `${name} final`);
    freeLive(heap, entry);
  }
  for (const cache of caches) heap.destroyCache(cache);
  heap.trim();
  heap.check();
  assert.equal(JSON.stringify(heap.stats()), fresh, `${name}: freeing all and trim() restore it`);
}

Deno.test("random mixes of every public call keep the books and never overlap live payloads", () => {
  const heaps: [string, () => PhysicalAllocator][] = [
    ["default", () => PhysicalAllocator.fromBuffer(new Uint8Array(16 * MIB))],
    ["debug", () => PhysicalAllocator.fromBuffer(new Uint8Array(16 * MIB), { debug: true })],
    [
      "first-fit",
      () => PhysicalAllocator.fromBuffer(new Uint8Array(8 * MIB), { policy: "first-fit" }),
    ],
    [
      "three regions, one too small",
      () =>
        new PhysicalAllocator(bufferMemory([
          { start: 0x10000, length: 3 * MIB },
          { start: 0x400000, length: 24 },
          { start: 0x500000, length: 2 * MIB },
        ])),
    ],
    [
      "a view at offset 12 at 64 GiB",
      () =>
        PhysicalAllocator.fromBuffer(new Uint8Array(new ArrayBuffer(6 * MIB + 100), 12, 6 * MIB), {
          baseAddress: 64 * GIB,
        }),
    ],
    ["2 MiB", () => PhysicalAllocator.fromBuffer(new Uint8Array(2 * MIB))],
  ];
  if (CAN_MAP_IDENTITY) {
    heaps.push([
      "identity-mapped, two ranges",
      () =>
        new PhysicalAllocator(mapIdentity([
          { start: 81 * GIB, length: 4 * MIB },
          { start: 81 * GIB + 8 * MIB, length: 4 * MIB },
        ])),
    ]);
  }
  heaps.forEach(([name, make], i) => {
    using heap = make();
    churn(heap, name, 500 + i, 1500);
  });
});

/** What everyCall() calls with: live handles of one heap. */
interface Handles {
  readonly block: number;
  readonly page: number;
  readonly cache: ObjectCache;
  readonly object: number;
  readonly walk: Iterator<unknown>;
}

/** Every public call of `heap` and its cache, named, for "every call refuses" checks. */
function everyCall(heap: PhysicalAllocator, h: Handles): [string, () => unknown][] {
  return [
    ["alloc", () => heap.alloc(8)],
    ["tryAlloc", () => heap.tryAlloc(8)],
    ["free", () => heap.free(h.block)],
    ["realloc", () => heap.realloc(h.block, 200)],
    ["bytes", () => heap.bytes(h.block)],
    ["sizeOf", () => heap.sizeOf(h.block)],
    ["capacityOf", () => heap.capacityOf(h.block)],
    ["allocPages", () => heap.allocPages(0)],
    ["freePages", () => heap.freePages(h.page)],
    ["createCache", () => heap.createCache("dentry", 32)],
    ["cache.alloc", () => h.cache.alloc()],
    ["cache.free", () => h.cache.free(h.object)],
    ["cache.info", () => h.cache.info()],
    ["destroyCache", () => heap.destroyCache(h.cache)],
    ["stats", () => heap.stats()],
    ["trim", () => heap.trim()],
    ["check", () => heap.check()],
    ["blocks", () => [...heap.blocks()]],
    ["layerRuns", () => [...heap.layerRuns()]],
    ["a walk begun before", () => h.walk.next()],
  ];
}
