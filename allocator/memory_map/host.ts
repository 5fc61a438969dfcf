/**
 * Reading this machine's own memory map and `vm.mmap_min_addr`.
 *
 * Linux publishes the firmware map (as the boot loader handed it over, before
 * the kernel's own changes) in `/sys/firmware/memmap`, world-readable. Deno 2
 * refuses reads under `/proc` and `/sys` unless the process has `--allow-all`,
 * even with `--allow-read`. A process that has `--allow-ffi` can call libc's
 * `fopen` itself, so `libcFallback: true` does exactly that when Deno refuses;
 * it is off by default so that nothing bypasses Deno's permissions unasked.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import { describeValue } from "../memory/physical_memory.ts";
import { readMapInput, recordInput } from "./input.ts";
import type { MemoryMapEntry } from "./entry.ts";
import { parseAddress, parseSysfsMemmap, type SysfsMemmapText } from "./parse.ts";
import { DEFAULT_MMAP_MIN_ADDRESS } from "./normalize.ts";
import { type Libc, openLibc, readTextFileViaLibc } from "../memory/_libc.ts";

/** Where Linux publishes the firmware memory map. */
export const SYSFS_MEMMAP_DIRECTORY = "/sys/firmware/memmap";

/** Where Linux publishes `vm.mmap_min_addr`. */
export const MMAP_MIN_ADDR_PATH = "/proc/sys/vm/mmap_min_addr";

/** A firmware map has a few dozen entries; stop probing for directories here. */
const SYSFS_ENTRY_COUNT_MAX = 4096;

/** Options of the host readers. */
export interface HostReadOptions {
  /**
   * When Deno refuses a read (it requires `--allow-all` for `/proc` and
   * `/sys`), read through libc `fopen` instead; needs `--allow-ffi`.
   * @default {false}
   */
  readonly libcFallback?: boolean;
  /**
   * The sysfs directory to read, for tests.
   * @default {"/sys/firmware/memmap"}
   */
  readonly directory?: string;
}

/** The host's map and how it was read. */
export interface HostMemoryMap {
  /** The entries, in directory-number order, with exclusive ends. */
  readonly entries: MemoryMapEntry[];
  /** `"deno"` when Deno's file API read it, `"libc"` when the libc fallback did. */
  readonly readVia: "deno" | "libc";
}

/**
 * Reads the host's firmware map from `/sys/firmware/memmap/N/{start,end,type}`.
 *
 * @param options Whether to fall back to libc, and the directory.
 * @returns The parsed entries and how they were read.
 * @throws {MemoryMapError} If the directory is missing or unreadable (the
 *   message says which permission or flag is needed) or its text is malformed.
 *
 * @example Reading a directory laid out like sysfs
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSysfsMemmap } from "./host.ts";
 *
 * const directory = Deno.makeTempDirSync();
 * Deno.mkdirSync(`${directory}/0`);
 * Deno.writeTextFileSync(`${directory}/0/start`, "0x100000\n");
 * Deno.writeTextFileSync(`${directory}/0/end`, "0x1fffff\n");
 * Deno.writeTextFileSync(`${directory}/0/type`, "System RAM\n");
 * const { entries, readVia } = readSysfsMemmap({ directory });
 * assert.deepEqual([entries[0].start, entries[0].end, readVia], [0x100000, 0x200000, "deno"]);
 * Deno.removeSync(directory, { recursive: true });
 * ```
 */
export function readSysfsMemmap(options: HostReadOptions = {}): HostMemoryMap {
  options = hostOptions(options, "read host memory map");
  const directory = options.directory ?? SYSFS_MEMMAP_DIRECTORY;
  let refusal: unknown;
  try {
    return { entries: parseSysfsMemmap(readSysfsWithDeno(directory)), readVia: "deno" };
  } catch (error) {
    if (!isRefusal(error)) throw wrapReadError(error, directory);
    refusal = error;
  }
  if (!options.libcFallback) {
    throw new MemoryMapError(
      `Cannot read host memory map ${directory}: Deno refused (${
        (refusal as Error).message
      }); pass libcFallback with --allow-ffi or use --allow-all`,
    );
  }
  const texts = withLibc(directory, (libc) => readSysfsWithLibc(libc, directory));
  return { entries: parseSysfsMemmap(texts), readVia: "libc" };
}

function readSysfsWithDeno(directory: string): SysfsMemmapText[] {
  if (Deno.permissions.querySync({ name: "read", path: directory }).state !== "granted") {
    throw new Deno.errors.NotCapable(`Requires read access to "${directory}"`);
  }
  const names: string[] = [];
  for (const item of Deno.readDirSync(directory)) {
    if (/^[0-9]+$/.test(item.name)) names.push(item.name);
    if (names.length > SYSFS_ENTRY_COUNT_MAX) break;
  }
  return names.map((name) => ({
    name,
    start: readEntryFile(`${directory}/${name}/start`),
    end: readEntryFile(`${directory}/${name}/end`),
    type: readEntryFile(`${directory}/${name}/type`),
  }));
}

/** One file of an entry directory: a missing one is named, not taken for a missing map. */
function readEntryFile(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new MemoryMapError(`Cannot read host memory map: ${path} does not exist`);
    }
    throw error;
  }
}

/** The options as the caller passed them, each read once and checked. */
function hostOptions(options: unknown, subject: string): HostReadOptions {
  const copy = readMapInput(
    subject,
    () => recordInput(options ?? {}, ["directory", "libcFallback"], subject, "options"),
  );
  if (copy.directory !== undefined && typeof copy.directory !== "string") {
    throw new MemoryMapError(
      `Cannot ${subject}: directory ${describeValue(copy.directory)} is not a string`,
    );
  }
  if (copy.libcFallback !== undefined && typeof copy.libcFallback !== "boolean") {
    throw new MemoryMapError(
      `Cannot ${subject}: libcFallback ${describeValue(copy.libcFallback)} is not a boolean`,
    );
  }
  return copy as HostReadOptions;
}

function readSysfsWithLibc(libc: Libc, directory: string): SysfsMemmapText[] {
  const texts: SysfsMemmapText[] = [];
  for (let index = 0; index < SYSFS_ENTRY_COUNT_MAX; index++) {
    const prefix = `${directory}/${index}`;
    const start = readTextFileViaLibc(libc, `${prefix}/start`);
    if (start === undefined) break;
    const end = readTextFileViaLibc(libc, `${prefix}/end`);
    const type = readTextFileViaLibc(libc, `${prefix}/type`);
    if (end === undefined || type === undefined) {
      throw new MemoryMapError(`Cannot read host memory map: ${prefix} lacks its end or type file`);
    }
    texts.push({ name: String(index), start, end, type });
  }
  if (texts.length === 0) {
    throw new MemoryMapError(`Cannot read host memory map: ${directory}/0/start cannot be opened`);
  }
  return texts;
}

function isRefusal(error: unknown): boolean {
  return error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied;
}

function wrapReadError(error: unknown, path: string): unknown {
  if (error instanceof MemoryMapError) return error;
  if (error instanceof Deno.errors.NotFound) {
    return new MemoryMapError(`Cannot read host memory map: ${path} does not exist (not Linux?)`);
  }
  return new MemoryMapError(`Cannot read host memory map ${path}: ${(error as Error).message}`);
}

function withLibc<T>(path: string, action: (libc: Libc) => T): T {
  let libc: Libc;
  try {
    libc = openLibc();
  } catch (error) {
    throw new MemoryMapError(
      `Cannot read ${path} through libc: ${(error as Error).message} (needs --allow-ffi)`,
    );
  }
  try {
    return action(libc);
  } finally {
    libc.close();
  }
}

/**
 * Reads the host's `vm.mmap_min_addr`, the lowest address user space may map.
 *
 * @param options Whether to fall back to libc when Deno refuses the read.
 * @returns The host's value, or {@linkcode DEFAULT_MMAP_MIN_ADDRESS} (65536)
 *   when it cannot be read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readMmapMinAddress } from "./host.ts";
 *
 * const address = readMmapMinAddress();
 * assert.ok(Number.isSafeInteger(address) && address >= 0);
 * ```
 */
export function readMmapMinAddress(options: HostReadOptions = {}): number {
  options = hostOptions(options, "read mmap_min_addr");
  let text: string | undefined;
  try {
    if (
      Deno.permissions.querySync({ name: "read", path: MMAP_MIN_ADDR_PATH }).state === "granted"
    ) {
      text = Deno.readTextFileSync(MMAP_MIN_ADDR_PATH);
    }
  } catch {
    text = undefined;
  }
  if (text === undefined && options.libcFallback) {
    try {
      text = withLibc(MMAP_MIN_ADDR_PATH, (libc) => readTextFileViaLibc(libc, MMAP_MIN_ADDR_PATH));
    } catch {
      text = undefined;
    }
  }
  if (text === undefined) return DEFAULT_MMAP_MIN_ADDRESS;
  try {
    return parseAddress(text, MMAP_MIN_ADDR_PATH);
  } catch {
    return DEFAULT_MMAP_MIN_ADDRESS;
  }
}
