/**
 * Physical memory as the allocator sees it: one address space (a window of
 * bytes) and the usable regions inside it.
 *
 * A kernel has one address space and a firmware map of usable ranges in it.
 * The allocator models exactly that: every region's `bytes` is a view over
 * one shared `ArrayBuffer`, the window, and an address maps to a byte of the
 * window by one subtraction. Memory between regions is never touched, so an
 * identity-mapped window may span holes that are not mapped at all.
 *
 * @module
 */

import { AllocatorError, InvalidMemoryError } from "../errors.ts";

/** One usable range of memory. */
export interface MemoryRegion {
  /** Address of the region's first byte, where the allocator sees it. */
  readonly base: number;
  /** The region's bytes: a view over the memory's one shared window buffer. */
  readonly bytes: Uint8Array;
  /**
   * The address the firmware map gave the region, when it differs from
   * `base` because the region could not be mapped at its physical address.
   * Absent for identity-mapped and plain buffer memory.
   */
  readonly physicalBase?: number;
}

/** Memory made of regions over one window; the allocator's input. */
export interface PhysicalMemory {
  /** The usable regions, in any order, not overlapping. */
  readonly regions: readonly MemoryRegion[];
  /** True once the memory has been released; the allocator then refuses every call. */
  readonly closed?: boolean;
  /** Releases the memory (for example `munmap`); called by the allocator's `close()`. */
  close?(): void;
}

/** A range of addresses, used to lay out buffer-backed memory. */
export interface AddressRange {
  /** Address of the first byte. */
  readonly start: number;
  /** Length in bytes. */
  readonly length: number;
}

/**
 * The resolved window of a memory: the view of its buffer from the lowest
 * region (rounded down to a granule) to the end of the highest, and the
 * address of the view's byte 0. Nothing outside the view is ever read or
 * written, so bytes of the buffer in front of or behind the regions stay the
 * caller's.
 */
export interface MemoryWindow {
  /** The view over the regions' buffer; its byte offset is a multiple of 4. */
  readonly bytes: Uint8Array;
  /** The address that byte 0 of `bytes` stands for: a multiple of 8, at least 0. */
  readonly baseAddress: number;
  /** The memory's regions as they were checked: copies, each property read once. */
  readonly regions: readonly MemoryRegion[];
}

/** Window starts are rounded down to this, so header words are aligned in every view. */
const WINDOW_ALIGN_BYTES = 8;

/**
 * The default address of the first byte of buffer memory: page 0 is never handed out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { DEFAULT_BUFFER_BASE_ADDRESS, PhysicalAllocator } from "@phys/allocator";
 *
 * const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4096));
 * assert.equal(heap.stats().regions[0].base, DEFAULT_BUFFER_BASE_ADDRESS);
 * ```
 */
export const DEFAULT_BUFFER_BASE_ADDRESS = 0x1000;

/**
 * Creates buffer-backed memory with one region per range, all in one fresh
 * `ArrayBuffer` spanning from the lowest start to the highest end.
 *
 * @param ranges The usable ranges; they must not overlap.
 * @returns Memory whose regions have exactly the given addresses.
 * @throws {InvalidMemoryError} If a range is empty, overlaps another or lies at address 0, or
 *   the span from the lowest start to the highest end is too large to allocate.
 *
 * @example Two regions with a hole between them
 * ```ts
 * import assert from "node:assert/strict";
 * import { bufferMemory } from "./physical_memory.ts";
 *
 * const memory = bufferMemory([{ start: 0x1000, length: 256 }, { start: 0x2000, length: 64 }]);
 * assert.equal(memory.regions.length, 2);
 * assert.equal(memory.regions[1].bytes.byteOffset, 0x1000);
 * ```
 */
export function bufferMemory(given: readonly AddressRange[]): PhysicalMemory {
  const ranges = readRanges(given, "create memory");
  if (ranges.length === 0) throw new InvalidMemoryError("Cannot create memory: no regions given");
  for (const range of ranges) assertRange(range);
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    if (previous.start + previous.length > sorted[i].start) {
      throw new InvalidMemoryError(
        `Cannot create memory: region ${hex(sorted[i].start)} overlaps region ${
          hex(previous.start)
        }`,
      );
    }
  }
  // The window starts granule-aligned so that word access works for odd region bases.
  const windowStart = sorted[0].start - (sorted[0].start % 8);
  const last = sorted[sorted.length - 1];
  const spanBytes = last.start + last.length - windowStart;
  let buffer: ArrayBuffer;
  try {
    buffer = new ArrayBuffer(spanBytes);
  } catch (error) {
    // A span the engine cannot allocate (a RangeError) is bad memory, not a crash.
    throw new InvalidMemoryError(
      `Cannot create memory spanning ${spanBytes} bytes from ${hex(windowStart)}: ${
        (error as Error).message
      }`,
    );
  }
  const regions = ranges.map((range) => ({
    base: range.start,
    bytes: new Uint8Array(buffer, range.start - windowStart, range.length),
  }));
  return { regions };
}

/**
 * Finds the one window all regions of `memory` view, checking that they
 * share a buffer at consistent offsets, do not overlap, and that the window
 * neither starts below address 0 nor reaches outside the buffer.
 *
 * @param memory The memory to resolve.
 * @returns The view over the regions and the address of its byte 0.
 * @throws {InvalidMemoryError} If the regions are empty, overlap, view different or detached
 *   buffers, or the window would start below address 0, before the buffer, or at a byte offset
 *   that is not a multiple of 4.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bufferMemory, resolveWindow } from "./physical_memory.ts";
 *
 * const window = resolveWindow(bufferMemory([{ start: 0x4000, length: 64 }]));
 * assert.equal(window.baseAddress, 0x4000);
 * assert.equal(window.bytes.byteLength, 64);
 * ```
 */
export function resolveWindow(memory: PhysicalMemory): MemoryWindow {
  const regions = readRegions(memory);
  if (regions.length === 0) throw new InvalidMemoryError("Cannot use memory: it has no regions");
  for (const region of regions) assertRegion(region);
  const first = regions[0];
  const buffer = first.bytes.buffer;
  const offsetToAddress = first.base - first.bytes.byteOffset;
  for (const region of regions) {
    if (region.bytes.buffer !== buffer) {
      throw new InvalidMemoryError(
        `Cannot use memory: region ${hex(region.base)} views a different buffer than region ${
          hex(first.base)
        }`,
      );
    }
    if (region.base - region.bytes.byteOffset !== offsetToAddress) {
      throw new InvalidMemoryError(
        `Cannot use memory: region ${hex(region.base)} sits at buffer offset ${
          hex(region.bytes.byteOffset)
        }, expected ${region.base - offsetToAddress}`,
      );
    }
  }
  const sorted = [...regions].sort((a, b) => a.base - b.base);
  for (let i = 1; i < sorted.length; i++) {
    const previous = sorted[i - 1];
    if (previous.base + previous.bytes.byteLength > sorted[i].base) {
      throw new InvalidMemoryError(
        `Cannot use memory: region ${hex(sorted[i].base)} overlaps region ${hex(previous.base)}`,
      );
    }
  }
  const lowest = sorted[0];
  const highest = sorted[sorted.length - 1];
  const baseAddress = lowest.base - (lowest.base % WINDOW_ALIGN_BYTES);
  const byteOffset = lowest.bytes.byteOffset - (lowest.base - baseAddress);
  if (byteOffset < 0 || byteOffset % 4 !== 0) {
    throw new InvalidMemoryError(
      `Cannot use memory: region ${
        hex(lowest.base)
      } sits at byte offset ${lowest.bytes.byteOffset}` +
        ` of its buffer, so its window would start at byte offset ${byteOffset}` +
        ` (it must be a multiple of 4 and at least 0)`,
    );
  }
  const byteLength = highest.base + highest.bytes.byteLength - baseAddress;
  return {
    bytes: new Uint8Array(buffer as ArrayBuffer, byteOffset, byteLength),
    baseAddress,
    regions,
  };
}

/**
 * Copies the caller's address ranges, reading each property once: a getter
 * that answers differently at each read cannot pass the checks with one
 * value and be used with another, and a read that throws (a revoked Proxy,
 * a throwing getter) is refused with a typed error. The copies are checked
 * by the caller.
 *
 * @param ranges What the caller passed: anything.
 * @param subject The call, for messages ("create memory").
 * @returns Plain `{ start, length }` copies (a non-object element as it was).
 * @throws {InvalidMemoryError} If `ranges` is not an array, or reading it throws.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readRanges } from "./physical_memory.ts";
 *
 * let reads = 0;
 * const range = { get start() { return ++reads * 0x1000; }, length: 64 };
 * assert.deepEqual(readRanges([range], "map"), [{ start: 0x1000, length: 64 }]);
 * assert.equal(reads, 1);
 * ```
 */
export function readRanges(ranges: unknown, subject: string): AddressRange[] {
  return readOnce(subject, () => {
    if (!Array.isArray(ranges)) {
      throw new InvalidMemoryError(
        `Cannot ${subject} from ${describeValue(ranges)}: expected an array of { start, length }`,
      );
    }
    const copies: AddressRange[] = [];
    const count = ranges.length;
    // A sparse array of length 2^32 - 1 would be walked for minutes.
    if (count > RANGES_MAX) {
      throw new InvalidMemoryError(
        `Cannot ${subject}: ${count} ranges are more than ${RANGES_MAX}`,
      );
    }
    for (let i = 0; i < count; i++) {
      const range: unknown = ranges[i];
      copies.push(
        typeof range === "object" && range !== null
          ? {
            start: (range as AddressRange).start,
            length: (range as AddressRange).length,
          }
          : range as AddressRange,
      );
    }
    return copies;
  });
}

/** The most ranges or regions one memory may have. */
const RANGES_MAX = 1 << 16;

/** The regions of a memory, copied as readRanges copies ranges (checked by resolveWindow). */
function readRegions(memory: PhysicalMemory): MemoryRegion[] {
  return readOnce("use memory", () => {
    const regions: unknown = typeof memory === "object" && memory !== null
      ? memory.regions
      : undefined;
    if (!Array.isArray(regions)) {
      throw new InvalidMemoryError(
        `Cannot use memory ${describeValue(memory)}: expected an object with a regions array`,
      );
    }
    const copies: MemoryRegion[] = [];
    const count = regions.length;
    if (count > RANGES_MAX) {
      throw new InvalidMemoryError(
        `Cannot use memory: ${count} regions are more than ${RANGES_MAX}`,
      );
    }
    for (let i = 0; i < count; i++) {
      const region: unknown = regions[i];
      if (typeof region !== "object" || region === null) {
        copies.push(region as MemoryRegion);
        continue;
      }
      const { base, bytes, physicalBase } = region as MemoryRegion;
      // A view rebuilt from the engine's own accessors: a subclass's getters are never read again.
      copies.push({
        base,
        bytes: bytes instanceof Uint8Array ? plainView(bytes, "use memory") : bytes,
        physicalBase,
      });
    }
    return copies;
  });
}

const TYPED_ARRAY_PROTOTYPE = Object.getPrototypeOf(Uint8Array.prototype);
/** The engine's own accessor of `name` on every typed array. */
function typedArrayGetter<T>(name: string): (view: Uint8Array) => T {
  const get = Object.getOwnPropertyDescriptor(TYPED_ARRAY_PROTOTYPE, name)!.get!;
  return (view) => get.call(view) as T;
}
const bufferOf = typedArrayGetter<ArrayBufferLike>("buffer");
const byteOffsetOf = typedArrayGetter<number>("byteOffset");
const byteLengthOf = typedArrayGetter<number>("byteLength");

/**
 * The same bytes as `view`, as a plain Uint8Array built from the engine's
 * own accessors: a subclass's getters (a byteLength that lies) or a Proxy
 * are never read again. A Proxy is refused with a typed error.
 *
 * @param view Anything `instanceof Uint8Array` said yes to.
 * @param subject The call, for messages ("use memory").
 * @returns A plain view of the same buffer, offset and length.
 * @throws {InvalidMemoryError} If `view` is not a real typed array (a Proxy of one).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { plainView } from "./physical_memory.ts";
 *
 * class Liar extends Uint8Array {
 *   override get byteLength(): number {
 *     return 1 << 30;
 *   }
 * }
 * assert.equal(plainView(new Liar(16), "use memory").byteLength, 16);
 * ```
 */
export function plainView(view: Uint8Array, subject: string): Uint8Array {
  return readOnce(
    subject,
    () => new Uint8Array(bufferOf(view), byteOffsetOf(view), byteLengthOf(view)),
  );
}

/** Runs `read` over caller input; anything it throws but the allocator's own errors becomes InvalidMemoryError. */
function readOnce<T>(subject: string, read: () => T): T {
  return readCallerInput(subject, read, InvalidMemoryError);
}

/**
 * Runs `read`, which reads a caller's input (getters, Proxies and traps may
 * run the caller's code and throw anything): what it throws, other than the
 * allocator's own errors, becomes an `ErrorClass` saying what was read.
 *
 * @param subject What the caller asked for, as in "Cannot {subject}".
 * @param read Reads the input.
 * @param ErrorClass The typed error a failed read becomes.
 * @returns What `read` returns.
 */
export function readCallerInput<T>(
  subject: string,
  read: () => T,
  ErrorClass: new (message: string) => AllocatorError,
): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof AllocatorError) throw error;
    throw new ErrorClass(
      `Cannot ${subject}: reading its input threw ${
        error instanceof Error ? error.name : describeValue(error)
      }`,
    );
  }
}

function assertRegion(region: MemoryRegion): void {
  if (typeof region !== "object" || region === null || !(region.bytes instanceof Uint8Array)) {
    throw new InvalidMemoryError(
      `Cannot use region ${describeValue(region)}: expected { base, bytes: Uint8Array }`,
    );
  }
  if (region.bytes.buffer.byteLength === 0 || isDetached(region.bytes.buffer)) {
    throw new InvalidMemoryError(
      `Cannot use region ${describeValue(region.base)}: its buffer is detached or empty`,
    );
  }
  assertRange({ start: region.base, length: region.bytes.byteLength });
  const physicalBase = region.physicalBase;
  if (physicalBase !== undefined) {
    if (
      typeof physicalBase !== "number" || !Number.isSafeInteger(physicalBase) ||
      physicalBase < 0 || !Number.isSafeInteger(physicalBase + region.bytes.byteLength)
    ) {
      throw new InvalidMemoryError(
        `Cannot use region ${describeValue(region.base)} with physicalBase ${
          describeValue(physicalBase)
        }: expected a safe integer address of at least 0 whose range ends below 2^53`,
      );
    }
  }
}

/**
 * True when `buffer` has been detached (transferred, or released by its owner).
 *
 * @param buffer Any buffer.
 * @returns Whether it is detached.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isDetached } from "./physical_memory.ts";
 *
 * const buffer = new ArrayBuffer(8);
 * buffer.transfer();
 * assert.equal(isDetached(buffer), true);
 * ```
 */
export function isDetached(buffer: ArrayBufferLike): boolean {
  return (buffer as ArrayBuffer).detached === true;
}

/**
 * Names any value in a message without throwing: Symbols, bigints and
 * objects whose conversion to a string throws included.
 *
 * @param value Any value.
 * @returns A short description: `-16`, `12n`, `Symbol(x)`, `"tlsf"`, `an object`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeValue } from "./physical_memory.ts";
 *
 * assert.equal(describeValue(Symbol("x")), "Symbol(x)");
 * assert.equal(describeValue(12n), "12n");
 * assert.equal(describeValue("8"), '"8"');
 * ```
 */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "bigint":
      return `${value}n`;
    case "symbol":
      return value.toString();
    case "function":
      return "a function";
    case "object":
      if (value === null) return "null";
      try {
        return Array.isArray(value) ? "an array" : "an object";
      } catch {
        // Array.isArray throws for a revoked Proxy only.
        return "a revoked Proxy";
      }
    default:
      return String(value);
  }
}

function assertRange(range: AddressRange): void {
  if (typeof range !== "object" || range === null) {
    throw new InvalidMemoryError(
      `Cannot use region ${describeValue(range)}: expected { start, length }`,
    );
  }
  const { start, length } = range;
  if (!Number.isSafeInteger(start) || start <= 0) {
    throw new InvalidMemoryError(
      `Cannot use region at ${describeValue(start)}: its start must be a positive integer address`,
    );
  }
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new InvalidMemoryError(
      `Cannot use region ${hex(start)} of length ${
        describeValue(length)
      }: its length must be a positive integer`,
    );
  }
  if (!Number.isSafeInteger(start + length)) {
    throw new InvalidMemoryError(
      `Cannot use region ${hex(start)} of length ${length}: it ends at or past 2^53`,
    );
  }
}

/** Formats an address as `0x…` for messages. */
export function hex(value: number): string {
  return Number.isSafeInteger(value) && value >= 0 ? `0x${value.toString(16)}` : String(value);
}
