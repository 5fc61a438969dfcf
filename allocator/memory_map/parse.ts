/**
 * Parsers for the three memory-map formats. Each returns entries in source
 * order with exclusive ends; sorting, overlap and clipping are the business
 * of `normalizeMemoryMap` (memory_map_normalize.ts).
 *
 * 1. Linux sysfs, `/sys/firmware/memmap/N/{start,end,type}`: one directory per
 *    firmware entry, `end` inclusive. {@linkcode parseSysfsMemmap} takes the
 *    files' text; {@linkcode parseSysfsDump} reads the one-line-per-entry dump
 *    format used by fixtures (`N START END TYPE…`).
 * 2. E820 as the kernel prints it at boot (`dmesg`), `end` inclusive:
 *    `[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x00000000bfffffff] usable`.
 *    The pre-3.x form `BIOS-e820: 0000000000100000 - 00000000c0000000 (usable)`
 *    (end exclusive) is read too.
 * 3. JSON: an array of `{ "start": A, "end": B, "type": T }` or
 *    `{ "start": A, "length": L, "type": T }`. Addresses are non-negative
 *    integers or strings (`"0x100000"` hex, `"1048576"` decimal); `end` is
 *    inclusive, like the two firmware formats it is usually copied from; `type`
 *    is any name {@linkcode memoryTypeFromName} accepts or an E820 type code.
 *    No other keys are allowed, so a typo is an error, not a silent default.
 *
 * Every error is a `MemoryMapError` naming the line (1-based) or the entry
 * (0-based index) at fault.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import { ADDRESS_LIMIT, type MemoryMapEntry, memoryTypeFromName } from "./entry.ts";
import { describeValue } from "../memory/physical_memory.ts";
import { arrayInput, readMapInput, recordInput, textInput } from "./input.ts";

/** The raw text of one `/sys/firmware/memmap/N` directory. */
export interface SysfsMemmapText {
  /** The directory name, `N`. */
  readonly name: string;
  /** Contents of `start`, for example `"0x100000\n"`. */
  readonly start: string;
  /** Contents of `end`: the inclusive last address. */
  readonly end: string;
  /** Contents of `type`, for example `"System RAM\n"`. */
  readonly type: string;
}

const ADDRESS_LIMIT_BIG = BigInt(ADDRESS_LIMIT);

/**
 * Parses an address or size written as `0x…` hex or as decimal digits.
 *
 * @param text The number as written.
 * @param where Names the line or entry for the error message.
 * @returns The value; it is below 2^53.
 * @throws {MemoryMapError} If the text is not a number or the value is 2^53 or more.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddress } from "./parse.ts";
 *
 * assert.equal(parseAddress(" 0x9fbff\n", "line 1"), 0x9fbff);
 * assert.equal(parseAddress("4096", "entry 0"), 4096);
 * assert.throws(() => parseAddress("0x1g", "line 2"), /line 2: 0x1g is not a number/);
 * ```
 */
export function parseAddress(text: string, where: string): number {
  if (typeof text !== "string") {
    throw new MemoryMapError(`Cannot parse ${where}: expected text, got ${describe(text)}`);
  }
  const trimmed = text.trim();
  if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(trimmed)) {
    throw new MemoryMapError(`Cannot parse ${where}: ${trimmed || "(empty)"} is not a number`);
  }
  const value = BigInt(trimmed);
  if (value >= ADDRESS_LIMIT_BIG) {
    throw new MemoryMapError(`Cannot parse ${where}: address ${trimmed} is past 2^53`);
  }
  return Number(value);
}

/**
 * Turns an inclusive last address into an entry, checking its order and range.
 *
 * @returns The entry with an exclusive end.
 * @throws {MemoryMapError} If `last < start` or the end passes 2^53.
 */
function entryFromInclusive(
  start: number,
  last: number,
  typeName: string,
  origin: string,
): MemoryMapEntry {
  if (last < start) {
    throw new MemoryMapError(
      `Cannot parse ${origin}: end 0x${last.toString(16)} is before start 0x${start.toString(16)}`,
    );
  }
  if (last + 1 >= ADDRESS_LIMIT) {
    throw new MemoryMapError(
      `Cannot parse ${origin}: end 0x${last.toString(16)} puts the range's end at or past 2^53`,
    );
  }
  const firmwareType = typeName.trim();
  return { start, end: last + 1, type: memoryTypeFromName(firmwareType), origin, firmwareType };
}

/**
 * Parses the text of the host's `/sys/firmware/memmap/N` directories.
 *
 * @param entries One object per directory with the text of its three files.
 * @returns The entries in directory-number order, with exclusive ends.
 * @throws {MemoryMapError} If a number cannot be parsed, an end precedes its
 *   start, an address passes 2^53 or no entries are given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSysfsMemmap } from "./parse.ts";
 *
 * const entries = parseSysfsMemmap([
 *   { name: "1", start: "0x100000\n", end: "0xbfffffff\n", type: "System RAM\n" },
 *   { name: "0", start: "0x0\n", end: "0x9fbff\n", type: "System RAM\n" },
 * ]);
 * assert.deepEqual(entries.map((e) => [e.start, e.end, e.type]), [
 *   [0, 0x9fc00, "usable"],
 *   [0x100000, 0xc0000000, "usable"],
 * ]);
 * assert.equal(entries[0].origin, "memmap/0");
 * ```
 */
export function parseSysfsMemmap(entries: readonly SysfsMemmapText[]): MemoryMapEntry[] {
  const subject = "parse sysfs memory map";
  // Each field read once, into copies (input.ts).
  entries = readMapInput(
    subject,
    () =>
      arrayInput(entries, subject, "directory").map((text, index) =>
        recordInput(text, ["name", "start", "end", "type"], subject, `directory ${index}`)
      ),
  ) as unknown as SysfsMemmapText[];
  if (entries.length === 0) {
    throw new MemoryMapError("Cannot parse sysfs memory map: it has no entries");
  }
  const ordered = [...entries].sort((a, b) => directoryNumber(a.name) - directoryNumber(b.name));
  return ordered.map((text) => {
    const origin = `memmap/${describeName(text.name)}`;
    for (const field of ["start", "end", "type"] as const) {
      if (typeof text[field] !== "string") {
        throw new MemoryMapError(
          `Cannot parse ${origin}: its ${field} is ${
            text[field] === undefined ? "missing" : describe(text[field])
          }, expected the text of the ${field} file`,
        );
      }
    }
    const start = parseAddress(text.start, `${origin} start`);
    const last = parseAddress(text.end, `${origin} end`);
    return entryFromInclusive(start, last, text.type, origin);
  });
}

function describeName(name: unknown): string {
  return typeof name === "string" ? name : describe(name);
}

function directoryNumber(name: string): number {
  const value = typeof name === "string" ? Number(name) : NaN;
  return Number.isInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}

/**
 * Parses a sysfs dump: one line per `/sys/firmware/memmap/N` directory,
 * `N START END TYPE…`, with START and END exactly as the files hold them (END
 * inclusive) and TYPE the rest of the line. Blank lines and `#` comments are
 * skipped. Such a dump is made by
 * `for d in /sys/firmware/memmap/*; do echo "${d##*\/} $(cat $d/start) $(cat $d/end) $(cat $d/type)"; done`.
 *
 * @param text The dump.
 * @returns The directories' text, ready for {@linkcode parseSysfsMemmap}.
 * @throws {MemoryMapError} If a line has fewer than four fields, naming the line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseSysfsDump, parseSysfsMemmap } from "./parse.ts";
 *
 * const dump = "# this machine\n0 0x0 0x9fbff System RAM\n1 0x9fc00 0xfffff Reserved\n";
 * const entries = parseSysfsMemmap(parseSysfsDump(dump));
 * assert.equal(entries[1].type, "reserved");
 * assert.equal(entries[1].end, 0x100000);
 * ```
 */
export function parseSysfsDump(text: string): SysfsMemmapText[] {
  text = textInput(text, "parse sysfs dump");
  const result: SysfsMemmapText[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index].trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(line);
    if (match === null) {
      throw new MemoryMapError(
        `Cannot parse line ${index + 1}: expected "N START END TYPE", got "${line}"`,
      );
    }
    result.push({ name: match[1], start: match[2], end: match[3], type: match[4] });
  }
  return result;
}

const E820_LINE = /BIOS-e820:\s*\[mem\s+(\S+?)-(\S+?)\]\s+(.+?)\s*$/;
const E820_LEGACY_LINE = /BIOS-e820:\s*([0-9a-fA-F]+)\s*-\s*([0-9a-fA-F]+)\s*\((.+)\)\s*$/;

/**
 * Parses the E820 map the Linux kernel prints at boot, as `dmesg` shows it.
 * Lines without `BIOS-e820:` (other kernel messages, `e820: update …`) are
 * ignored, so a whole `dmesg` log can be passed; a leading `[    0.000000] `
 * timestamp is allowed.
 *
 * @param text The kernel log or just its E820 lines.
 * @returns One entry per `BIOS-e820:` line, with exclusive ends.
 * @throws {MemoryMapError} If a `BIOS-e820:` line is malformed, an end
 *   precedes its start or passes 2^53 (naming the line), or no line is found.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseE820 } from "./parse.ts";
 *
 * const entries = parseE820(
 *   "[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x00000000bfffffff] usable\n" +
 *     "[    0.000000] BIOS-e820: [mem 0x00000000eec00000-0x00000000febfffff] reserved\n",
 * );
 * assert.deepEqual(entries[0], {
 *   start: 0x100000, end: 0xc0000000, type: "usable", origin: "line 1", firmwareType: "usable",
 * });
 * assert.throws(() => parseE820("BIOS-e820: [mem 0x2000-0x1fff] usable"), /line 1: end 0x1fff is before start 0x2000/);
 * ```
 */
export function parseE820(text: string): MemoryMapEntry[] {
  text = textInput(text, "parse E820 map");
  const result: MemoryMapEntry[] = [];
  const lines = text.split("\n");
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index];
    if (!line.includes("BIOS-e820:")) continue;
    const origin = `line ${index + 1}`;
    const current = E820_LINE.exec(line);
    if (current !== null) {
      const start = parseAddress(current[1], origin);
      const last = parseAddress(current[2], origin);
      result.push(entryFromInclusive(start, last, current[3], origin));
      continue;
    }
    const legacy = E820_LEGACY_LINE.exec(line);
    if (legacy !== null) {
      const start = parseAddress(`0x${legacy[1]}`, origin);
      const end = parseAddress(`0x${legacy[2]}`, origin);
      result.push(entryFromInclusive(start, end - 1, legacy[3], origin));
      continue;
    }
    throw new MemoryMapError(
      `Cannot parse ${origin}: expected "BIOS-e820: [mem 0xSTART-0xEND] TYPE", got "${line.trim()}"`,
    );
  }
  if (result.length === 0) {
    throw new MemoryMapError("Cannot parse E820 map: no BIOS-e820 lines found");
  }
  return result;
}

const JSON_KEYS = new Set(["start", "end", "length", "type"]);

/**
 * Parses the JSON memory-map format (see the module doc): an array of
 * `{ start, end | length, type }` with `end` inclusive.
 *
 * @param json The JSON text, or an already parsed value.
 * @returns One entry per array element, with exclusive ends.
 * @throws {MemoryMapError} If the text is not JSON, the value is not a
 *   non-empty array of such objects, a key is unknown or missing, a number
 *   cannot be parsed, an end precedes its start or an address passes 2^53;
 *   the message names the entry's index.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMemoryMapJson } from "./parse.ts";
 *
 * const entries = parseMemoryMapJson(
 *   '[{"start": "0x100000", "length": 1048576, "type": "usable"},' +
 *     ' {"start": 0, "end": "0xfff", "type": "reserved"}]',
 * );
 * assert.deepEqual(entries.map((e) => [e.start, e.end]), [[0x100000, 0x200000], [0, 0x1000]]);
 * assert.throws(() => parseMemoryMapJson('[{"start": 0, "size": 4096, "type": "usable"}]'), /entry 0: unknown key "size"/);
 * ```
 */
export function parseMemoryMapJson(json: string | unknown): MemoryMapEntry[] {
  let value: unknown = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(textInput(json, "parse JSON memory map"));
    } catch (error) {
      throw new MemoryMapError(`Cannot parse JSON memory map: ${(error as Error).message}`);
    }
  }
  const subject = "read JSON memory map";
  // An already parsed value may be anything (a Proxy, getters, holes): read once (input.ts).
  const items = readMapInput(subject, () => {
    if (!Array.isArray(value)) {
      throw new MemoryMapError(
        `Cannot ${subject}: expected an array of entries, got ${describe(value)}`,
      );
    }
    return arrayInput(value, subject, "entry").map((item, index) =>
      typeof item === "object" && item !== null && !Array.isArray(item)
        ? jsonRecord(item, subject, `entry ${index}`)
        : item
    );
  });
  if (items.length === 0) throw new MemoryMapError("Cannot read JSON memory map: it is empty");
  return items.map((item, index) => jsonEntry(item, `entry ${index}`));
}

/** An entry object's fields, each read once; an own key that is no field is refused first. */
function jsonRecord(item: object, subject: string, where: string): Record<string, unknown> {
  const unknown = Object.keys(item).find((key) => !JSON_KEYS.has(key));
  if (unknown !== undefined) {
    throw new MemoryMapError(
      `Cannot read ${where}: unknown key ${
        describeValue(unknown)
      } (expected start, end or length, type)`,
    );
  }
  return recordInput(item, [...JSON_KEYS], subject, where);
}

function jsonEntry(item: unknown, origin: string): MemoryMapEntry {
  if (typeof item !== "object" || item === null || Array.isArray(item)) {
    throw new MemoryMapError(`Cannot read ${origin}: expected an object, got ${describe(item)}`);
  }
  // A copy jsonRecord made: only known keys.
  const record = item as Record<string, unknown>;
  if (!("start" in record)) throw new MemoryMapError(`Cannot read ${origin}: "start" is missing`);
  if (!("type" in record)) throw new MemoryMapError(`Cannot read ${origin}: "type" is missing`);
  const hasEnd = "end" in record;
  const hasLength = "length" in record;
  if (hasEnd === hasLength) {
    throw new MemoryMapError(`Cannot read ${origin}: give exactly one of "end" and "length"`);
  }
  const typeValue = record.type;
  if (typeof typeValue !== "string" && !Number.isInteger(typeValue)) {
    throw new MemoryMapError(
      `Cannot read ${origin}: "type" must be a string or E820 code, got ${describe(typeValue)}`,
    );
  }
  const start = jsonNumber(record.start, `${origin} "start"`);
  if (hasEnd) {
    return entryFromInclusive(
      start,
      jsonNumber(record.end, `${origin} "end"`),
      String(typeValue),
      origin,
    );
  }
  const lengthBytes = jsonNumber(record.length, `${origin} "length"`);
  if (lengthBytes === 0) throw new MemoryMapError(`Cannot read ${origin}: "length" is 0`);
  return entryFromInclusive(start, start + lengthBytes - 1, String(typeValue), origin);
}

function jsonNumber(value: unknown, where: string): number {
  if (typeof value === "string") return parseAddress(value, where);
  if (typeof value === "bigint") {
    throw new MemoryMapError(
      `Cannot parse ${where}: ${describe(value)} is a bigint; give a number or a "0x…" string`,
    );
  }
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0) {
      throw new MemoryMapError(`Cannot parse ${where}: ${value} is not a non-negative integer`);
    }
    if (value >= ADDRESS_LIMIT) {
      throw new MemoryMapError(`Cannot parse ${where}: address ${value} is past 2^53`);
    }
    return value;
  }
  throw new MemoryMapError(
    `Cannot parse ${where}: expected a number or string, got ${describe(value)}`,
  );
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  // JSON.stringify throws on a bigint and returns undefined for a Symbol: describeValue does neither.
  return `${typeof value} ${describeValue(value)}`;
}

/** The text formats {@linkcode parseMemoryMap} reads. */
export type MemoryMapFormat = "json" | "e820" | "sysfs";

/**
 * Every {@linkcode MemoryMapFormat}, for option checks and help texts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { MEMORY_MAP_FORMATS } from "@phys/allocator";
 *
 * assert.ok(MEMORY_MAP_FORMATS.includes("e820"));
 * ```
 */
export const MEMORY_MAP_FORMATS: readonly MemoryMapFormat[] = ["json", "e820", "sysfs"];

/**
 * Which format a memory map text is in: E820 when it holds `BIOS-e820:`
 * lines (checked first: a dmesg log starts with `[    0.000000]`, which
 * also looks like JSON), JSON when it starts with `[` or `{`, else a sysfs
 * dump.
 *
 * @param text A memory map as text.
 * @returns The format to parse it with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { detectMemoryMapFormat } from "@phys/allocator";
 *
 * assert.equal(detectMemoryMapFormat("BIOS-e820: [mem 0x0-0x9fbff] usable"), "e820");
 * assert.equal(detectMemoryMapFormat('[{"start": 0, "end": 4095, "type": "usable"}]'), "json");
 * ```
 */
export function detectMemoryMapFormat(text: string): MemoryMapFormat {
  text = textInput(text, "detect memory map format");
  // JSON first: a "type" string may hold anything, "BIOS-e820:" included.
  // A dmesg log starts with "[" too, but with a timestamp: "[    0.000000]".
  if (/^\s*\{/.test(text) || (/^\s*\[/.test(text) && !DMESG_TIMESTAMP.test(text))) {
    return "json";
  }
  // A sysfs dump whose every line is "N 0xSTART 0xEND TYPE" stays one, whatever its types say.
  const lines = text.split("\n").map((line) => line.trim()).filter((line) =>
    line !== "" && !line.startsWith("#")
  );
  if (lines.length > 0 && lines.every((line) => SYSFS_DUMP_LINE.test(line))) return "sysfs";
  return text.includes("BIOS-e820:") ? "e820" : "sysfs";
}

/** A dmesg line's timestamp at the start of a text. */
const DMESG_TIMESTAMP = /^\s*\[\s*\d+(\.\d+)?\]/;
/** A sysfs dump line: directory number, start, end (hex or decimal), type. */
const SYSFS_DUMP_LINE = /^\d+\s+(0[xX])?[0-9a-fA-F]+\s+(0[xX])?[0-9a-fA-F]+\s+\S/;

/**
 * Parses a memory map in any supported text format.
 *
 * @param text JSON, E820 dmesg lines or a sysfs dump.
 * @param format The format, or `"auto"` to detect it with {@linkcode detectMemoryMapFormat}.
 * @returns The entries and the format they were read as.
 * @throws {MemoryMapError} If the text is not a valid map in that format.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMemoryMap } from "@phys/allocator";
 *
 * const { entries, format } = parseMemoryMap("BIOS-e820: [mem 0x0000000000100000-0x0000000000ffffff] usable");
 * assert.equal(format, "e820");
 * assert.equal(entries[0].start, 0x100000);
 * ```
 */
export function parseMemoryMap(
  text: string,
  format: MemoryMapFormat | "auto" = "auto",
): { entries: MemoryMapEntry[]; format: MemoryMapFormat } {
  text = textInput(text, "parse memory map");
  if (format !== "auto" && !MEMORY_MAP_FORMATS.includes(format)) {
    throw new MemoryMapError(
      `Cannot parse memory map: format ${describeValue(format)} is not "auto" or one of ${
        MEMORY_MAP_FORMATS.join(", ")
      }`,
    );
  }
  const resolved = format === "auto" ? detectMemoryMapFormat(text) : format;
  const entries = resolved === "json"
    ? parseMemoryMapJson(text)
    : resolved === "e820"
    ? parseE820(text)
    : parseSysfsMemmap(parseSysfsDump(text));
  return { entries, format: resolved };
}
