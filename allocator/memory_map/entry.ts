/**
 * Firmware memory maps: the shared vocabulary of the parsers
 * (`memory_map_parse.ts`), the host reader (`memory_map_host.ts`), the
 * built-in samples (`memory_map_samples.ts`) and normalisation
 * (`memory_map_normalize.ts`).
 *
 * An entry is a half-open range `[start, end)` of physical addresses with a
 * type. The firmware formats print an inclusive last byte instead; the parsers
 * convert, so `end` in a {@linkcode MemoryMapEntry} is always exclusive.
 *
 * ```text
 * 0x0        0x9fc00   0x100000                0xc0000000      0x100000000            0x640000000
 * ├─ usable ─┼reserved─┼──────── usable ───────┤ hole/reserved ├──────── usable ───────┤
 * ```
 *
 * @module
 */

/**
 * What a range of physical memory holds, reduced to what an allocator needs
 * to know. Only `"usable"` memory is ever handed out.
 *
 * - `usable`: RAM free for the operating system (E820 type 1, sysfs "System RAM").
 * - `reserved`: firmware or device memory (E820 type 2).
 * - `acpi`: ACPI tables, reclaimable after they are read (E820 type 3).
 * - `nvs`: ACPI non-volatile storage, must be preserved (E820 type 4).
 * - `unusable`: RAM with detected errors (E820 type 5).
 * - `unknown`: anything else (persistent memory, soft-reserved, vendor types).
 */
export type MemoryType = "usable" | "reserved" | "acpi" | "nvs" | "unusable" | "unknown";

/**
 * Every {@linkcode MemoryType}, from weakest to strongest on overlap.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MEMORY_TYPES } from "@phys/allocator";
 *
 * assert.equal(MEMORY_TYPES[0], "usable"); // any other type wins an overlap with usable memory
 * ```
 */
export const MEMORY_TYPES: readonly MemoryType[] = [
  "usable",
  "reserved",
  "acpi",
  "nvs",
  "unusable",
  "unknown",
];

/** One range of a memory map. */
export interface MemoryMapEntry {
  /** Address of the first byte. */
  readonly start: number;
  /** Address one past the last byte (exclusive), so `end - start` is the size in bytes. */
  readonly end: number;
  /** The kind of memory. */
  readonly type: MemoryType;
  /** Where the entry came from, for messages: `"line 3"`, `"entry 2"`, `"memmap/4"`. */
  readonly origin?: string;
  /** The type as the source spelled it (`"System RAM"`, `"ACPI NVS"`), when known. */
  readonly firmwareType?: string;
}

/**
 * The page size the maps are normalised to: x86-64 and most arm64 kernels use 4 KiB pages.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeMemoryMap, PAGE_BYTES } from "@phys/allocator";
 *
 * const map = normalizeMemoryMap([{ start: 0x10_0234, end: 0x20_0000, type: "usable" }]);
 * assert.equal(map.usable[0].start % PAGE_BYTES, 0); // usable ranges start on a page boundary
 * ```
 */
export const PAGE_BYTES = 4096;

/** The largest address a map may hold: JavaScript numbers are exact up to 2^53. */
export const ADDRESS_LIMIT = 2 ** 53;

const TYPE_NAMES: ReadonlyMap<string, MemoryType> = new Map([
  // E820 as the kernel prints it at boot (arch/x86/kernel/e820.c e820_print_type).
  ["usable", "usable"],
  ["reserved", "reserved"],
  ["acpi data", "acpi"],
  ["acpi nvs", "nvs"],
  ["unusable", "unusable"],
  // sysfs /sys/firmware/memmap/*/type (e820_type_to_string).
  ["system ram", "usable"],
  ["acpi tables", "acpi"],
  ["acpi non-volatile storage", "nvs"],
  ["unusable memory", "unusable"],
  // The type names of this module and the E820 type codes.
  ["acpi", "acpi"],
  ["nvs", "nvs"],
  ["unknown", "unknown"],
  ["ram", "usable"],
  ["1", "usable"],
  ["2", "reserved"],
  ["3", "acpi"],
  ["4", "nvs"],
  ["5", "unusable"],
]);

/**
 * Maps a type name as a firmware source spells it to a {@linkcode MemoryType}.
 * Case and surrounding space are ignored; a name that is not recognised is
 * `"unknown"` (which is never handed out), not an error, because firmware
 * invents new types (persistent memory, soft-reserved).
 *
 * @param name The type name: `"System RAM"`, `"usable"`, `"ACPI NVS"`, `"2"`.
 * @returns The memory type.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memoryTypeFromName } from "./entry.ts";
 *
 * assert.equal(memoryTypeFromName("System RAM"), "usable");
 * assert.equal(memoryTypeFromName("ACPI Non-volatile Storage"), "nvs");
 * assert.equal(memoryTypeFromName("Persistent Memory"), "unknown");
 * ```
 */
export function memoryTypeFromName(name: string): MemoryType {
  const key = name.trim().toLowerCase().replace(/\s+/g, " ");
  return TYPE_NAMES.get(key) ?? "unknown";
}

/**
 * The size of an entry in bytes.
 *
 * @param entry The entry.
 * @returns `entry.end - entry.start`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { entrySizeBytes } from "./entry.ts";
 *
 * assert.equal(entrySizeBytes({ start: 0x1000, end: 0x3000, type: "usable" }), 0x2000);
 * ```
 */
export function entrySizeBytes(entry: MemoryMapEntry): number {
  return entry.end - entry.start;
}

/**
 * Formats a byte count for people: `640 KiB`, `3 GiB`, `1.5 MiB`, `56 B`.
 *
 * @param sizeBytes A non-negative byte count.
 * @returns The size with a binary unit, at most one decimal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatBytes } from "./entry.ts";
 *
 * assert.equal(formatBytes(655360), "640 KiB");
 * assert.equal(formatBytes(0xc0000000), "3 GiB");
 * assert.equal(formatBytes(1536 * 1024), "1.5 MiB");
 * ```
 */
export function formatBytes(sizeBytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = sizeBytes;
  let unitIndex = 0;
  while (value >= 1024 && unitIndex < units.length - 1) {
    value /= 1024;
    unitIndex++;
  }
  const rounded = Math.round(value * 10) / 10;
  return `${rounded} ${units[unitIndex]}`;
}
