/**
 * Built-in memory maps, for machines whose own map cannot be read and for
 * tests that need a known shape.
 *
 * - `qemu`: what SeaBIOS reports to a QEMU q35/pc guest with 4 GiB of RAM: low
 *   memory up to 640 KiB (minus the EBDA), the legacy video/BIOS hole, RAM up
 *   to the 3 GiB PCI hole, then the last 1 GiB of RAM above 4 GiB.
 * - `fragmented`: 300 small usable regions (4 KiB to 124 KiB, some not
 *   page-aligned, a few smaller than a page) between reserved ranges, starting
 *   at 4 GiB: a stress case for allocators that assume one big region.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import type { MemoryMapEntry, MemoryType } from "./entry.ts";

/** The names {@linkcode sampleMemoryMap} accepts. */
export type SampleMapName = "qemu" | "fragmented";

/**
 * Every sample name, for help texts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SAMPLE_MAP_NAMES, sampleMemoryMap } from "@phys/allocator";
 *
 * for (const name of SAMPLE_MAP_NAMES) assert.ok(sampleMemoryMap(name).length > 0);
 * ```
 */
export const SAMPLE_MAP_NAMES: readonly SampleMapName[] = ["qemu", "fragmented"];

/** How many usable regions the `fragmented` sample has. */
export const FRAGMENTED_REGION_COUNT = 300;

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

function entry(start: number, end: number, type: MemoryType, index: number): MemoryMapEntry {
  return { start, end, type, origin: `sample entry ${index}`, firmwareType: type };
}

function qemuSample(): MemoryMapEntry[] {
  const ranges: [number, number, MemoryType][] = [
    [0x0, 0x9fc00, "usable"],
    [0x9fc00, 0xa0000, "reserved"],
    [0xf0000, 0x100000, "reserved"],
    [0x100000, 0xbffe0000, "usable"],
    [0xbffe0000, 0xc0000000, "reserved"],
    [0xfeffc000, 0xff000000, "reserved"],
    [0xfffc0000, 0x100000000, "reserved"],
    [0x100000000, 0x100000000 + GIB, "usable"],
  ];
  return ranges.map(([start, end, type], index) => entry(start, end, type, index));
}

/**
 * A deterministic generator (a 32-bit xorshift) so the fragmented sample is
 * the same on every run without storing 600 lines.
 */
function xorshift(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

function fragmentedSample(): MemoryMapEntry[] {
  const next = xorshift(0x5eed1234);
  const result: MemoryMapEntry[] = [];
  let address = 4 * GIB;
  for (let index = 0; index < FRAGMENTED_REGION_COUNT; index++) {
    const pages = 1 + (next() % 31);
    const unaligned = index % 17 === 5;
    const tiny = index % 50 === 7;
    const sizeBytes = tiny ? 2 * KIB : pages * 4 * KIB + (unaligned ? 0x200 : 0);
    const start = address + (unaligned ? 0x200 : 0);
    result.push(entry(start, start + sizeBytes, "usable", result.length));
    address = Math.ceil((start + sizeBytes) / 4096) * 4096;
    const gapBytes = (1 + (next() % 4)) * 4 * KIB;
    const gapType: MemoryType = index % 23 === 11 ? "acpi" : "reserved";
    result.push(entry(address, address + gapBytes, gapType, result.length));
    address += gapBytes;
  }
  return result;
}

/**
 * Returns a built-in memory map.
 *
 * @param name `"qemu"` or `"fragmented"` (see the module doc).
 * @returns A fresh array of entries with exclusive ends.
 * @throws {MemoryMapError} If the name is not a sample's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sampleMemoryMap } from "./samples.ts";
 *
 * const qemu = sampleMemoryMap("qemu");
 * assert.equal(qemu.filter((e) => e.type === "usable").length, 3);
 * assert.equal(sampleMemoryMap("fragmented").filter((e) => e.type === "usable").length, 300);
 * assert.throws(() => sampleMemoryMap("bochs"), /Unknown sample map "bochs"/);
 * ```
 */
export function sampleMemoryMap(name: string): MemoryMapEntry[] {
  if (name === "qemu") return qemuSample();
  if (name === "fragmented") return fragmentedSample();
  throw new MemoryMapError(
    `Unknown sample map "${name}": expected one of ${SAMPLE_MAP_NAMES.join(", ")}`,
  );
}
