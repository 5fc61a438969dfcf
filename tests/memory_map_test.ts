import assert from "#assert";
import { MemoryMapError } from "../allocator/errors.ts";
import {
  type MemoryMapEntry,
  type MemoryType,
  memoryTypeFromName,
} from "../allocator/memory_map/entry.ts";
import {
  parseAddress,
  parseE820,
  parseMemoryMapJson,
  parseSysfsDump,
  parseSysfsMemmap,
} from "../allocator/memory_map/parse.ts";
import {
  type AccountedSpan,
  DEFAULT_MMAP_MIN_ADDRESS,
  MIN_REGION_BYTES,
  type NormalizedMemoryMap,
  normalizeMemoryMap,
  type Reservation,
} from "../allocator/memory_map/normalize.ts";
import { MemoryMap } from "../allocator/memory_map/memory_map.ts";
import { FRAGMENTED_REGION_COUNT, sampleMemoryMap } from "../allocator/memory_map/samples.ts";
import {
  readMmapMinAddress,
  readSysfsMemmap,
  SYSFS_MEMMAP_DIRECTORY,
} from "../allocator/memory_map/host.ts";
import { HEADER_BYTES, MIN_BLOCK_BYTES } from "../allocator/heap/layout.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const readFixture = (name: string) => Deno.readTextFileSync(new URL(name, FIXTURES));

/** This machine's firmware map, as the three sources describe it (exclusive ends). */
const HOST_MAP: [number, number, MemoryType][] = [
  [0x0, 0x9fc00, "usable"],
  [0x9fc00, 0x100000, "reserved"],
  [0x100000, 0xc0000000, "usable"],
  [0xeec00000, 0xfec00000, "reserved"],
  [0x100000000, 0x640000000, "usable"],
];

const shape = (entries: readonly MemoryMapEntry[]) =>
  entries.map((e) => [e.start, e.end, e.type] as [number, number, MemoryType]);

const isMapError = (pattern: RegExp) => (error: unknown) =>
  error instanceof MemoryMapError && error.code === "MEMORY_MAP_INVALID" &&
  pattern.test(error.message);

/** Checks every accounting invariant the report promises. */
function assertAccounting(entries: readonly MemoryMapEntry[], result: NormalizedMemoryMap): void {
  const { report, usable } = result;
  const sumOf = (disposition: AccountedSpan["disposition"]) =>
    report.spans.filter((s) => s.disposition === disposition).reduce((n, s) => n + s.sizeBytes, 0);
  assert.equal(report.inputBytes, entries.reduce((n, e) => n + e.end - e.start, 0));
  assert.equal(report.coveredBytes + report.overlapBytes, report.inputBytes);
  assert.equal(
    report.usableBytes + report.reservedBytes + report.clippedBytes + report.droppedBytes,
    report.coveredBytes,
  );
  assert.equal(sumOf("usable"), report.usableBytes);
  assert.equal(sumOf("reserved"), report.reservedBytes);
  assert.equal(sumOf("clipped"), report.clippedBytes);
  assert.equal(sumOf("dropped"), report.droppedBytes);
  assert.equal(report.reasons.reduce((n, r) => n + r.sizeBytes, 0), report.coveredBytes);
  for (let i = 1; i < report.spans.length; i++) {
    assert.ok(report.spans[i - 1].end <= report.spans[i].start, "spans are sorted and disjoint");
  }
  assert.equal(result.resolved.reduce((n, r) => n + r.end - r.start, 0), report.coveredBytes);
  assert.equal(usable.reduce((n, r) => n + r.length, 0), report.usableBytes);
}

Deno.test("memoryTypeFromName() maps sysfs, E820 and code names to types", () => {
  const cases: [string, MemoryType][] = [
    ["System RAM", "usable"],
    ["usable", "usable"],
    ["Reserved", "reserved"],
    ["ACPI Tables", "acpi"],
    ["ACPI data", "acpi"],
    ["ACPI Non-volatile Storage", "nvs"],
    ["ACPI NVS", "nvs"],
    ["Unusable memory", "unusable"],
    ["unusable", "unusable"],
    ["persistent (type 12)", "unknown"],
    ["Soft Reserved", "unknown"],
    ["2", "reserved"],
    ["  system   ram \n", "usable"],
  ];
  for (const [name, type] of cases) assert.equal(memoryTypeFromName(name), type, name);
});

Deno.test("parseAddress() reads hex and decimal and rejects junk and values past 2^53", () => {
  assert.equal(parseAddress("0x63fffffff\n", "x"), 0x63fffffff);
  assert.equal(parseAddress("655360", "x"), 655360);
  assert.throws(() => parseAddress("", "line 4"), isMapError(/line 4: \(empty\) is not a number/));
  assert.throws(() => parseAddress("-1", "line 4"), isMapError(/-1 is not a number/));
  assert.throws(() => parseAddress("0x", "line 4"), isMapError(/0x is not a number/));
  assert.throws(() => parseAddress("1e9", "line 4"), isMapError(/1e9 is not a number/));
  assert.equal(parseAddress("0x1fffffffffffff", "x"), 2 ** 53 - 1);
  assert.throws(
    () => parseAddress("0x20000000000000", "line 9"),
    isMapError(/line 9: address 0x20000000000000 is past 2\^53/),
  );
});

Deno.test("parseSysfsMemmap() reads this machine's raw /sys/firmware/memmap fixture", () => {
  const entries = parseSysfsMemmap(parseSysfsDump(readFixture("sysfs_memmap_host.txt")));
  assert.deepEqual(shape(entries), HOST_MAP);
  assert.equal(entries[4].origin, "memmap/4");
  assert.equal(entries[4].firmwareType, "System RAM");
});

Deno.test("parseSysfsMemmap() orders directories numerically and names the one at fault", () => {
  const entry = (name: string, start: string, end: string) => ({
    name,
    start,
    end,
    type: "System RAM\n",
  });
  const entries = parseSysfsMemmap([
    entry("10", "0x3000", "0x3fff"),
    entry("2", "0x1000", "0x1fff"),
  ]);
  assert.deepEqual(entries.map((e) => e.origin), ["memmap/2", "memmap/10"]);
  assert.throws(
    () => parseSysfsMemmap([entry("3", "0x2000", "0x1fff")]),
    isMapError(/memmap\/3: end 0x1fff is before start 0x2000/),
  );
  assert.throws(
    () => parseSysfsMemmap([entry("5", "0x2000", "zz")]),
    isMapError(/memmap\/5 end: zz is not a number/),
  );
  assert.throws(() => parseSysfsMemmap([]), isMapError(/no entries/));
});

Deno.test("parseSysfsDump() rejects a line with too few fields, naming the line", () => {
  assert.throws(
    () => parseSysfsDump("# comment\n0 0x0 0x9fbff System RAM\n1 0x9fc00\n"),
    isMapError(/line 3: expected "N START END TYPE", got "1 0x9fc00"/),
  );
});

Deno.test("parseE820() reads the dmesg fixture and ignores other kernel lines", () => {
  const entries = parseE820(readFixture("e820_dmesg_host.txt"));
  assert.deepEqual(shape(entries), HOST_MAP);
  assert.equal(entries[0].origin, "line 3");
});

Deno.test("parseE820() reads lines with and without a timestamp and the legacy form", () => {
  const text = [
    "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
    "[   12.345678] BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved",
    "BIOS-e820: [mem 0x000000007ffe0000-0x000000007fffffff] ACPI data",
    "BIOS-e820: [mem 0x0000000080000000-0x0000000080000fff] ACPI NVS",
    " BIOS-e820: 0000000000100000 - 000000007ffe0000 (usable)",
    "BIOS-e820: [mem 0x0000000180000000-0x00000001ffffffff] persistent (type 12)",
  ].join("\n");
  assert.deepEqual(shape(parseE820(text)), [
    [0x0, 0x9fc00, "usable"],
    [0xf0000, 0x100000, "reserved"],
    [0x7ffe0000, 0x80000000, "acpi"],
    [0x80000000, 0x80001000, "nvs"],
    [0x100000, 0x7ffe0000, "usable"],
    [0x180000000, 0x200000000, "unknown"],
  ]);
});

Deno.test("parseE820() rejects an end before its start", () => {
  assert.throws(
    () => parseE820("x\nBIOS-e820: [mem 0x0000000000002000-0x0000000000000fff] usable"),
    isMapError(/^Cannot parse line 2: end 0xfff is before start 0x2000$/),
  );
});

Deno.test("parseE820() rejects malformed lines, bad numbers and addresses past 2^53", () => {
  assert.throws(
    () => parseE820("BIOS-e820: [mem 0x0-0x9fbff] usable\nBIOS-e820: garbage"),
    isMapError(
      /line 2: expected "BIOS-e820: \[mem 0xSTART-0xEND\] TYPE", got "BIOS-e820: garbage"/,
    ),
  );
  assert.throws(
    () => parseE820("BIOS-e820: [mem 0x0-0x9fbfg] usable"),
    isMapError(/line 1: 0x9fbfg is not a number/),
  );
  assert.throws(
    () => parseE820("BIOS-e820: [mem 0x0-0xffffffffffffffff] reserved"),
    isMapError(/line 1: address 0xffffffffffffffff is past 2\^53/),
  );
  assert.throws(
    () => parseE820("BIOS-e820: [mem 0x0-0x1fffffffffffff] reserved"),
    isMapError(/line 1: end 0x1fffffffffffff puts the range.s end at or past 2\^53/),
  );
  assert.throws(() => parseE820("no map here\n"), isMapError(/no BIOS-e820 lines found/));
});

Deno.test("parseMemoryMapJson() reads the JSON fixture, equal to the qemu sample", () => {
  const entries = parseMemoryMapJson(readFixture("memory_map_qemu.json"));
  assert.deepEqual(shape(entries), shape(sampleMemoryMap("qemu")));
  assert.equal(entries[3].firmwareType, "System RAM");
  assert.equal(entries[6].type, "reserved"); // E820 code 2
});

Deno.test("parseMemoryMapJson() accepts an already parsed value", () => {
  const entries = parseMemoryMapJson([{ start: 4096, length: 4096, type: "usable" }]);
  assert.deepEqual(shape(entries), [[4096, 8192, "usable"]]);
});

Deno.test("parseMemoryMapJson() rejects unknown shapes, naming the entry", () => {
  const cases: [unknown, RegExp][] = [
    ["{", /Cannot parse JSON memory map: /],
    ['{"entries": []}', /expected an array of entries, got an object/],
    ["[]", /it is empty/],
    ["[42]", /entry 0: expected an object, got number 42/],
    [
      '[{"start": 0, "end": 1, "type": "usable"}, [1]]',
      /entry 1: expected an object, got an array/,
    ],
    ['[{"start": 0, "size": 4096, "type": "usable"}]', /entry 0: unknown key "size"/],
    ['[{"end": 4095, "type": "usable"}]', /entry 0: "start" is missing/],
    ['[{"start": 0, "end": 4095}]', /entry 0: "type" is missing/],
    [
      '[{"start": 0, "end": 4095, "length": 4096, "type": "usable"}]',
      /exactly one of "end" and "length"/,
    ],
    ['[{"start": 0, "type": "usable"}]', /exactly one of "end" and "length"/],
    [
      '[{"start": 0, "end": 4095, "type": true}]',
      /"type" must be a string or E820 code, got boolean true/,
    ],
    [
      '[{"start": -4096, "end": 4095, "type": "usable"}]',
      /entry 0 "start": -4096 is not a non-negative integer/,
    ],
    ['[{"start": 0.5, "end": 4095, "type": "usable"}]', /0.5 is not a non-negative integer/],
    ['[{"start": "0xZZ", "end": 4095, "type": "usable"}]', /entry 0 "start": 0xZZ is not a number/],
    ['[{"start": null, "end": 4095, "type": "usable"}]', /expected a number or string, got null/],
    ['[{"start": 0, "length": 0, "type": "usable"}]', /entry 0: "length" is 0/],
    [
      '[{"start": 8192, "end": 4095, "type": "usable"}]',
      /entry 0: end 0xfff is before start 0x2000/,
    ],
    [
      '[{"start": 9007199254740992, "end": 1, "type": "usable"}]',
      /address 9007199254740992 is past 2\^53/,
    ],
    [
      '[{"start": "0x1fffffffff0000", "length": "0x10000", "type": "usable"}]',
      /entry 0: end .* puts the range.s end at or past 2\^53/,
    ],
  ];
  for (const [json, pattern] of cases) {
    assert.throws(() => parseMemoryMapJson(json), isMapError(pattern), String(json));
  }
});

Deno.test("sampleMemoryMap() has a qemu map with the PCI hole and a fragmented map", () => {
  const qemu = sampleMemoryMap("qemu");
  const usable = qemu.filter((e) => e.type === "usable");
  assert.deepEqual(usable.map((e) => [e.start, e.end]), [
    [0, 0x9fc00],
    [0x100000, 0xbffe0000],
    [0x100000000, 0x140000000],
  ]);
  const fragmented = sampleMemoryMap("fragmented");
  assert.equal(fragmented.filter((e) => e.type === "usable").length, FRAGMENTED_REGION_COUNT);
  assert.deepEqual(shape(sampleMemoryMap("fragmented")), shape(fragmented), "deterministic");
  assert.throws(() => sampleMemoryMap("nope"), isMapError(/Unknown sample map "nope"/));
});

Deno.test("normalizeMemoryMap() accounts for every byte of this machine's map", () => {
  const entries = parseSysfsMemmap(parseSysfsDump(readFixture("sysfs_memmap_host.txt")));
  const result = normalizeMemoryMap(entries, { mmapMinAddress: 4096 });
  assertAccounting(entries, result);
  assert.deepEqual(result.usable, [
    { start: 0x1000, length: 0x9e000 },
    { start: 0x100000, length: 0xc0000000 - 0x100000 },
    { start: 0x100000000, length: 0x540000000 },
  ]);
  assert.equal(result.report.clippedBytes, 0xc00); // 0x9f000-0x9fc00
  assert.equal(result.report.droppedBytes, 0x1000); // page 0
  assert.equal(result.report.reservedBytes, 0x60400 + 0x10000000);
});

Deno.test("normalizeMemoryMap() accounts for every byte of the samples", () => {
  for (const name of ["qemu", "fragmented"]) {
    const entries = sampleMemoryMap(name);
    const result = normalizeMemoryMap(entries);
    assertAccounting(entries, result);
    assert.ok(result.usable.every((r) => r.start % 4096 === 0 && r.length % 4096 === 0));
  }
  const fragmented = normalizeMemoryMap(sampleMemoryMap("fragmented"));
  assert.ok(fragmented.usable.length >= 280, `${fragmented.usable.length} usable regions`);
  assert.ok(fragmented.report.clippedBytes > 0);
});

Deno.test("normalizeMemoryMap() lets reserved win over usable and counts the overlap", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x10000, end: 0x20000, type: "usable" },
    { start: 0x18000, end: 0x19000, type: "reserved" },
  ];
  const result = normalizeMemoryMap(entries);
  assert.deepEqual(result.usable, [
    { start: 0x10000, length: 0x8000 },
    { start: 0x19000, length: 0x7000 },
  ]);
  assert.equal(result.report.overlapBytes, 0x1000);
  assert.deepEqual(result.report.overlaps.map((o) => [o.start, o.end, o.type, o.origins]), [
    [0x18000, 0x19000, "reserved", ["entry 0", "entry 1"]],
  ]);
  assertAccounting(entries, result);
});

Deno.test("normalizeMemoryMap() resolves overlapping non-usable types by precedence", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x10000, end: 0x14000, type: "reserved" },
    { start: 0x12000, end: 0x16000, type: "nvs" },
    { start: 0x13000, end: 0x15000, type: "acpi" },
    { start: 0x15000, end: 0x17000, type: "unknown" },
  ];
  const result = normalizeMemoryMap(entries);
  assert.deepEqual(shape(result.resolved), [
    [0x10000, 0x12000, "reserved"],
    [0x12000, 0x15000, "nvs"],
    [0x15000, 0x17000, "unknown"],
  ]);
  assertAccounting(entries, result);
});

Deno.test("normalizeMemoryMap() merges overlapping and adjacent usable entries", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x20000, end: 0x30000, type: "usable" },
    { start: 0x10000, end: 0x20000, type: "usable" },
    { start: 0x28000, end: 0x40000, type: "usable" },
  ];
  const result = normalizeMemoryMap(entries);
  assert.deepEqual(result.usable, [{ start: 0x10000, length: 0x30000 }]);
  assert.equal(result.resolved.length, 1);
  assert.equal(result.report.overlapBytes, 0x8000);
  assertAccounting(entries, result);
});

Deno.test("normalizeMemoryMap() rejects overlaps when asked, naming both entries", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x10000, end: 0x20000, type: "usable", origin: "line 3" },
    { start: 0x1f000, end: 0x30000, type: "usable", origin: "line 4" },
  ];
  assert.throws(
    () => normalizeMemoryMap(entries, { rejectOverlaps: true }),
    isMapError(/line 3 and line 4 overlap at 0x1f000/),
  );
});

Deno.test("normalizeMemoryMap() clips usable memory to page boundaries", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x10200, end: 0x13e00, type: "usable" },
    { start: 0x20100, end: 0x20f00, type: "usable" },
  ];
  const result = normalizeMemoryMap(entries);
  assert.deepEqual(result.usable, [{ start: 0x11000, length: 0x2000 }]);
  assert.deepEqual(
    result.report.spans.map((s) => [s.start, s.end, s.disposition, s.reason]),
    [
      [0x10200, 0x11000, "clipped", "partial page"],
      [0x11000, 0x13000, "usable", "usable"],
      [0x13000, 0x13e00, "clipped", "partial page"],
      [0x20100, 0x20f00, "clipped", "less than one whole page"],
    ],
  );
  assertAccounting(entries, result);
});

Deno.test("normalizeMemoryMap() drops page 0 and memory below vm.mmap_min_addr", () => {
  const entries: MemoryMapEntry[] = [{ start: 0, end: 0x20000, type: "usable" }];
  const byDefault = normalizeMemoryMap(entries);
  assert.equal(DEFAULT_MMAP_MIN_ADDRESS, 65536);
  assert.deepEqual(byDefault.usable, [{ start: 0x10000, length: 0x10000 }]);
  assert.deepEqual(
    byDefault.report.spans.map((s) => [s.start, s.end, s.disposition, s.reason]),
    [
      [0, 0x1000, "dropped", "page 0"],
      [0x1000, 0x10000, "dropped", "below vm.mmap_min_addr 0x10000"],
      [0x10000, 0x20000, "usable", "usable"],
    ],
  );
  const host = normalizeMemoryMap(entries, { mmapMinAddress: 4096 });
  assert.deepEqual(host.usable, [{ start: 0x1000, length: 0x1f000 }]);
  const zero = normalizeMemoryMap(entries, { mmapMinAddress: 0 });
  assert.deepEqual(zero.usable, [{ start: 0x1000, length: 0x1f000 }], "page 0 is dropped anyway");
  const unaligned = normalizeMemoryMap(entries, { mmapMinAddress: 0x1800 });
  assert.deepEqual(unaligned.usable, [{ start: 0x2000, length: 0x1e000 }]);
  assertAccounting(entries, unaligned);
});

Deno.test("normalizeMemoryMap() drops regions too small for one block", () => {
  assert.equal(MIN_REGION_BYTES, MIN_BLOCK_BYTES + HEADER_BYTES);
  const entries: MemoryMapEntry[] = [
    { start: 0x10000, end: 0x10000 + MIN_REGION_BYTES - 8, type: "usable" },
    { start: 0x20000, end: 0x20000 + MIN_REGION_BYTES, type: "usable" },
  ];
  const result = normalizeMemoryMap(entries, { pageBytes: 8 });
  assert.deepEqual(result.usable, [{ start: 0x20000, length: MIN_REGION_BYTES }]);
  assert.deepEqual(result.report.reasons.find((r) => r.disposition === "dropped"), {
    disposition: "dropped",
    reason: `smaller than ${MIN_REGION_BYTES} bytes`,
    sizeBytes: MIN_REGION_BYTES - 8,
    spanCount: 1,
  });
  const strict = normalizeMemoryMap(entries, { pageBytes: 8, minRegionBytes: 4096 });
  assert.deepEqual(strict.usable, []);
  assertAccounting(entries, strict);
});

Deno.test("MemoryMap.reserve() carves the kernel image out of usable memory", () => {
  const entries = sampleMemoryMap("qemu");
  const map = new MemoryMap(entries)
    .reserve(0x1000000, 0x1234567, "kernel image")
    .reserve(0x2000000, 0x800000, "initrd"); // overlaps the kernel image's tail
  const result = map.normalize();
  const low = result.usable.find((r) => r.start === 0x100000);
  assert.deepEqual(low, { start: 0x100000, length: 0xf00000 });
  assert.ok(result.usable.some((r) => r.start === 0x2800000), "usable resumes after initrd");
  assert.deepEqual(
    result.report.reservations.map((r) => [r.label, r.carvedBytes]),
    [["kernel image", 0x1234567], ["initrd", 0x2800000 - 0x2234567]],
  );
  assert.ok(
    result.report.reasons.some((r) =>
      r.reason === "reserved: kernel image" && r.sizeBytes === 0x1234567
    ),
  );
  assertAccounting(entries, result);
});

Deno.test("MemoryMap.reserve() ignores the part of a reservation outside usable memory", () => {
  const entries: MemoryMapEntry[] = [
    { start: 0x100000, end: 0x200000, type: "usable" },
    { start: 0x200000, end: 0x300000, type: "reserved" },
  ];
  const result = new MemoryMap(entries).reserve(0x1f0000, 0x200000, "firmware log").normalize();
  assert.deepEqual(result.usable, [{ start: 0x100000, length: 0xf0000 }]);
  assert.equal(result.report.reservations[0].carvedBytes, 0x10000);
  assertAccounting(entries, result);
});

Deno.test("MemoryMap.reserve() rejects malformed reservations", () => {
  const map = new MemoryMap(sampleMemoryMap("qemu"));
  assert.throws(
    () => map.reserve(0x1000, 0, "empty"),
    isMapError(/length 0 is not a positive integer/),
  );
  assert.throws(
    () => map.reserve(-1, 4096, "negative"),
    isMapError(/start -1 is not a non-negative/),
  );
  assert.throws(
    () => map.reserve(0x1000, 4096, " "),
    isMapError(/label must be a non-empty string/),
  );
  assert.throws(
    () => map.reserve(2 ** 53 - 4096, 8192, "huge"),
    isMapError(/ends at or past 2\^53/),
  );
  assert.equal(map.reservations.length, 0);
});

Deno.test("normalizeMemoryMap() rejects an empty map, malformed entries and bad options", () => {
  assert.throws(() => normalizeMemoryMap([]), isMapError(/it has no entries/));
  assert.throws(() => new MemoryMap([]), isMapError(/it has no entries/));
  assert.throws(
    () => normalizeMemoryMap([{ start: 0x2000, end: 0x2000, type: "usable", origin: "line 7" }]),
    isMapError(/line 7: end 0x2000 is not after start 0x2000/),
  );
  assert.throws(
    () => normalizeMemoryMap([{ start: 0, end: 4096, type: "ram" as MemoryType }]),
    isMapError(/entry 0: unknown memory type "ram"/),
  );
  assert.throws(
    () => normalizeMemoryMap([{ start: 0, end: 2 ** 53, type: "usable" }]),
    isMapError(/entry 0: end 9007199254740992 is not an integer below 2\^53/),
  );
  const entries: MemoryMapEntry[] = [{ start: 0, end: 4096, type: "usable" }];
  assert.throws(
    () => normalizeMemoryMap(entries, { pageBytes: 3000 }),
    isMapError(/pageBytes 3000/),
  );
  assert.throws(
    () => normalizeMemoryMap(entries, { mmapMinAddress: -1 }),
    isMapError(/mmapMinAddress -1/),
  );
  assert.throws(
    () => normalizeMemoryMap(entries, { minRegionBytes: 0 }),
    isMapError(/minRegionBytes 0/),
  );
});

/** A small random map: overlapping entries of random types on a 64-page address space. */
function randomMap(next: () => number): { entries: MemoryMapEntry[]; reservations: Reservation[] } {
  const types: MemoryType[] = [
    "usable",
    "usable",
    "usable",
    "reserved",
    "acpi",
    "nvs",
    "unusable",
    "unknown",
  ];
  const entries: MemoryMapEntry[] = [];
  const entryCount = 1 + (next() % 12);
  for (let i = 0; i < entryCount; i++) {
    const start = next() % 0x40000;
    const end = start + 1 + (next() % 0x10000);
    entries.push({ start, end, type: types[next() % types.length] });
  }
  const reservations: Reservation[] = [];
  for (let i = 0; i < next() % 3; i++) {
    reservations.push({ start: next() % 0x40000, length: 1 + (next() % 0x8000), label: `r${i}` });
  }
  return { entries, reservations };
}

Deno.test("normalizeMemoryMap() accounts for every byte of random overlapping maps", () => {
  let state = 0x2545f491;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  for (let round = 0; round < 300; round++) {
    const { entries, reservations } = randomMap(next);
    const result = normalizeMemoryMap(entries, { reservations, mmapMinAddress: 0x2000 });
    assertAccounting(entries, result);
    // Byte by byte (sampled every 64 bytes): the disposition agrees with the entries.
    for (let address = 0; address < 0x50000; address += 64) {
      const covering = entries.filter((e) => e.start <= address && address < e.end);
      const span = result.report.spans.find((s) => s.start <= address && address < s.end);
      assert.equal(span === undefined, covering.length === 0, `coverage at ${address}`);
      if (span === undefined) continue;
      const allUsable = covering.every((e) => e.type === "usable");
      const reserved = reservations.some((r) => r.start <= address && address < r.start + r.length);
      if (!allUsable) assert.equal(span.disposition, "reserved", `firmware type at ${address}`);
      if (span.disposition === "usable") {
        assert.ok(allUsable && !reserved && address >= 0x2000, `usable at ${address}`);
      }
    }
  }
});

Deno.test("readSysfsMemmap() reads a sysfs-like directory and names a missing one", () => {
  const directory = Deno.makeTempDirSync();
  try {
    const lines = readFixture("sysfs_memmap_host.txt").split("\n").filter((l) => /^\d/.test(l));
    for (const line of lines) {
      const [name, start, end, ...type] = line.split(" ");
      Deno.mkdirSync(`${directory}/${name}`);
      Deno.writeTextFileSync(`${directory}/${name}/start`, `${start}\n`);
      Deno.writeTextFileSync(`${directory}/${name}/end`, `${end}\n`);
      Deno.writeTextFileSync(`${directory}/${name}/type`, `${type.join(" ")}\n`);
    }
    const { entries, readVia } = readSysfsMemmap({ directory });
    assert.equal(readVia, "deno");
    assert.deepEqual(shape(entries), HOST_MAP);
  } finally {
    Deno.removeSync(directory, { recursive: true });
  }
  assert.throws(
    () => readSysfsMemmap({ directory: `${directory}-missing` }),
    isMapError(/does not exist/),
  );
});

const hostHasMemmap = (() => {
  try {
    return Deno.build.os === "linux" && Deno.statSync(SYSFS_MEMMAP_DIRECTORY) !== undefined;
  } catch (error) {
    // Deno refuses to stat /sys without --allow-all: the directory exists then.
    return error instanceof Deno.errors.NotCapable;
  }
})();
if (!hostHasMemmap) {
  console.log(`memory_map_test: ${SYSFS_MEMMAP_DIRECTORY} is missing, host map tests are skipped`);
}

Deno.test({
  name: "readSysfsMemmap() reads the host map, through libc when Deno refuses",
  ignore: !hostHasMemmap,
  fn() {
    let refused: unknown;
    try {
      readSysfsMemmap();
    } catch (error) {
      refused = error;
    }
    if (refused !== undefined) {
      assert.ok(isMapError(/Deno refused .*libcFallback/)(refused), String(refused));
    }
    const { entries, readVia } = readSysfsMemmap({ libcFallback: true });
    assert.equal(readVia, refused === undefined ? "deno" : "libc");
    assert.ok(entries.some((e) => e.type === "usable"));
    assertAccounting(entries, normalizeMemoryMap(entries));
  },
});

Deno.test("readMmapMinAddress() returns the host's value or the default", () => {
  const plain = readMmapMinAddress();
  const viaLibc = readMmapMinAddress({ libcFallback: true });
  assert.ok(Number.isSafeInteger(plain) && plain >= 0);
  assert.ok(Number.isSafeInteger(viaLibc) && viaLibc >= 0);
  if (Deno.build.os !== "linux") assert.equal(viaLibc, DEFAULT_MMAP_MIN_ADDRESS);
});
