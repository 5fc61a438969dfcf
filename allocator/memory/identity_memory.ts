/**
 * Identity-mapped memory: each usable range of a firmware map is `mmap`ed
 * into this process at its physical address, so the addresses the allocator
 * hands out are the physical addresses, as in a kernel whose boot loader
 * identity-mapped RAM.
 *
 * ```text
 * physical map   0x1000┌──┐0x9f000   0x100000┌──────┐0xc0000000   0x100000000┌──────────┐
 * this process   0x1000└──┘0x9f000   0x100000└──────┘0xc0000000   0x100000000└──────────┘
 * window         ├──────────────── one ArrayBuffer from the lowest base to the highest end ────┤
 *                (the gaps in it are mapped too, zero pages no region holds: the
 *                buffer's every byte is readable, and no other mapping lands there)
 * ```
 *
 * Each range is mapped with `MAP_FIXED_NOREPLACE | MAP_NORESERVE | MAP_PRIVATE
 * | MAP_ANONYMOUS`: the kernel maps exactly there or fails with EEXIST (never
 * replacing another mapping), and only pages touched cost memory. A range that
 * cannot be mapped at its address (already in use, below `vm.mmap_min_addr`,
 * or a kernel older than 4.17 that ignores NOREPLACE and returns another
 * address) is relocated: mapped as near above the highest mapped range as
 * possible, at an offset that is a multiple of 2 MiB (so alignments up to
 * 2 MiB agree between the two addresses). Its region then has `base` (where
 * the allocator sees it) and `physicalBase` (the firmware's address), and its
 * {@linkcode RegionMapping} says `"relocated"` with the offset. Nothing
 * changes addresses silently.
 *
 * One `ArrayBuffer` spanning all mappings is made with
 * `Deno.UnsafePointerView.getArrayBuffer`; every region's `bytes` is a view
 * over it, so reads and writes are plain typed-array accesses, never FFI
 * calls. `close()` first detaches that buffer (every view becomes empty, so a
 * stray read gets `undefined` instead of touching unmapped memory, which would
 * kill the process) and then `munmap`s each range exactly once.
 *
 * Needs `--allow-ffi` (unscoped: a path-scoped `--allow-ffi=PATH` does not
 * grant `UnsafePointerView`). Linux only.
 *
 * @module
 */

import { alignUp } from "../_math.ts";
import { InvalidMemoryError, InvalidOptionError, MappingFailedError } from "../errors.ts";
import {
  type AddressRange,
  describeValue,
  hex,
  type MemoryRegion,
  type PhysicalMemory,
  readRanges,
} from "./physical_memory.ts";
import {
  DEFAULT_LIBC_PATH,
  errnoName,
  lastErrno,
  type Libc,
  MAP_ANONYMOUS,
  MAP_FAILED,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_NORESERVE,
  MAP_PRIVATE,
  openLibc,
  pointerValue,
  PROT_READ,
  PROT_WRITE,
} from "./_libc.ts";

/** How a region was mapped. */
export type MappingKind = "identity" | "relocated";

/** Where one range of the map ended up. */
export interface RegionMapping {
  /** The firmware's address of the range. */
  readonly physicalBase: number;
  /** The address it is mapped at in this process (equal to `physicalBase` when identity-mapped). */
  readonly base: number;
  /** Bytes mapped. */
  readonly lengthBytes: number;
  /** `"identity"` or `"relocated"`. */
  readonly kind: MappingKind;
  /** `base - physicalBase`: 0 for identity mappings, a multiple of 2 MiB otherwise (may be negative). */
  readonly offsetBytes: number;
  /** Why the identity mapping failed, for relocated ranges: `"EEXIST (17)"`. */
  readonly reason?: string;
}

/** Memory backed by `mmap`; see the module doc. */
export interface IdentityMemory extends PhysicalMemory, Disposable {
  /** One region per input range, in input order; `physicalBase` is set on relocated ones. */
  readonly regions: readonly MemoryRegion[];
  /** One mapping record per input range, in input order. */
  readonly mappings: readonly RegionMapping[];
  /** Address of the window's byte 0 (the lowest mapped base). */
  readonly windowBase: number;
  /** Bytes from the lowest mapped base to the highest mapped end, holes included. */
  readonly windowBytes: number;
  /** True once `close()` has run. */
  readonly closed: boolean;
  /** Detaches the window and unmaps every range; later calls do nothing. */
  close(): void;
}

/** Options of {@linkcode mapIdentity}. */
export interface IdentityMapOptions {
  /**
   * Relocate a range that cannot be mapped at its physical address instead of
   * failing.
   * @default {true}
   */
  readonly relocate?: boolean;
  /**
   * The C library to load.
   * @default {"libc.so.6"}
   */
  readonly libraryPath?: string;
  /**
   * How many candidate addresses above the highest mapping to try per
   * relocated range before letting the kernel choose.
   * @default {64}
   */
  readonly relocationAttemptsMax?: number;
}

/**
 * Relocation offsets are multiples of this, so 2 MiB alignment survives relocation.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RELOCATION_ALIGN_BYTES } from "@phys/allocator";
 *
 * assert.equal(RELOCATION_ALIGN_BYTES, 2 * 1024 * 1024); // one x86-64 huge page
 * ```
 */
export const RELOCATION_ALIGN_BYTES = 2 * 1024 * 1024;

const PROTECTION = PROT_READ | PROT_WRITE;
const FIXED_FLAGS = MAP_FIXED_NOREPLACE | MAP_NORESERVE | MAP_PRIVATE | MAP_ANONYMOUS;
const FLOATING_FLAGS = MAP_NORESERVE | MAP_PRIVATE | MAP_ANONYMOUS;

/**
 * Maps usable ranges at their physical addresses (see the module doc).
 *
 * @param ranges Page-aligned, non-overlapping ranges, as `normalizeMemoryMap`'s `usable`.
 * @param options Relocation and library options.
 * @returns Memory for `new PhysicalAllocator(memory)`; close it (or `using`) to unmap.
 * @throws {InvalidMemoryError} If there are no ranges, or one is not page-aligned, is at 0 or overlaps another.
 * @throws {MappingFailedError} If not on Linux, libc cannot be loaded (no
 *   `--allow-ffi`), or a range can be mapped neither at its address nor (with
 *   `relocate`) elsewhere; nothing stays mapped then.
 *
 * @example Identity-mapping 64 KiB at 8 GiB
 * ```ts
 * import assert from "node:assert/strict";
 * import { mapIdentity } from "./identity_memory.ts";
 *
 * using memory = mapIdentity([{ start: 0x2_0000_0000, length: 0x10000 }]);
 * const region = memory.regions[0];
 * assert.equal(region.base, memory.mappings[0].physicalBase); // identity, or relocated and reported
 * region.bytes[0] = 42;
 * assert.equal(region.bytes[0], 42);
 * ```
 */
export function mapIdentity(
  ranges: readonly AddressRange[],
  options: IdentityMapOptions = {},
): IdentityMemory {
  if (Deno.build.os !== "linux") {
    throw new MappingFailedError(
      `Cannot map identity memory: MAP_FIXED_NOREPLACE is Linux-only, running on ${Deno.build.os}`,
    );
  }
  try {
    // Each option read once (see readRanges): a getter cannot answer twice.
    const given: IdentityMapOptions = options ?? {};
    options = {
      libraryPath: given.libraryPath,
      relocate: given.relocate,
      relocationAttemptsMax: given.relocationAttemptsMax,
    };
  } catch (error) {
    throw new InvalidOptionError(
      `Cannot map identity memory: reading its options threw ${
        error instanceof Error ? error.name : "a value"
      }`,
    );
  }
  const libraryPath = options.libraryPath ?? DEFAULT_LIBC_PATH;
  let libc: Libc;
  try {
    libc = openLibc(libraryPath);
  } catch (error) {
    throw new MappingFailedError(
      `Cannot map identity memory: loading ${libraryPath} failed (needs --allow-ffi): ${
        (error as Error).message
      }`,
    );
  }
  const mapper = new Mapper(libc, options);
  try {
    ranges = readRanges(ranges, "map identity memory");
    checkRanges(ranges, libc.symbols.getpagesize());
    const mappings = mapper.mapAll(ranges);
    return new MappedMemory(libc, mappings, mapper.fillGaps(mappings, libc.symbols.getpagesize()));
  } catch (error) {
    mapper.unmapAll();
    libc.close();
    throw error;
  }
}

function checkRanges(ranges: readonly AddressRange[], pageBytes: number): void {
  if (ranges.length === 0) {
    throw new InvalidMemoryError("Cannot map identity memory: no ranges given");
  }
  for (const range of ranges) {
    if (typeof range !== "object" || range === null) {
      throw new InvalidMemoryError(
        `Cannot map identity memory from range ${describeValue(range)}: expected { start, length }`,
      );
    }
    const { start, length } = range;
    if (!Number.isSafeInteger(start) || start <= 0 || start % pageBytes !== 0) {
      throw new InvalidMemoryError(
        `Cannot map range at ${
          hex(start)
        }: its start must be a positive multiple of the ${pageBytes}-byte page below 2^53`,
      );
    }
    if (!Number.isSafeInteger(length) || length <= 0 || length % pageBytes !== 0) {
      throw new InvalidMemoryError(
        `Cannot map range at ${hex(start)} of length ${
          describeValue(length)
        }: its length must be a positive multiple of the ${pageBytes}-byte page`,
      );
    }
    // Physical addresses past 2^53 are no exact numbers (the memory-map parsers refuse them too).
    if (start + length > 2 ** 53) {
      throw new InvalidMemoryError(
        `Cannot map range at ${hex(start)} of length ${length}: it ends at or past 2^53`,
      );
    }
  }
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  for (let index = 1; index < sorted.length; index++) {
    const previous = sorted[index - 1];
    if (previous.start + previous.length > sorted[index].start) {
      throw new InvalidMemoryError(
        `Cannot map range at ${hex(sorted[index].start)}: it overlaps the range at ${
          hex(previous.start)
        }`,
      );
    }
  }
}

type Attempt = { readonly ok: true } | {
  readonly ok: false;
  readonly reason: string;
  readonly errno: number;
};

/**
 * The most mmap calls that map the gaps of one window: a gap other mappings
 * hold parts of is mapped in halves around them (Mapper.fillGaps).
 */
const GAP_FILL_CALLS_MAX = 4096;

/** A range this module mapped. */
interface MappedRange {
  readonly base: number;
  readonly lengthBytes: number;
}

/** Does the `mmap` calls; remembers what it mapped so a failure can undo everything. */
class Mapper {
  readonly #libc: Libc;
  readonly #relocate: boolean;
  readonly #attemptsMax: number;
  readonly #mapped: MappedRange[] = [];

  constructor(libc: Libc, options: IdentityMapOptions) {
    this.#libc = libc;
    this.#relocate = options.relocate ?? true;
    this.#attemptsMax = options.relocationAttemptsMax ?? 64;
    if (!Number.isSafeInteger(this.#attemptsMax) || this.#attemptsMax < 0) {
      throw new InvalidOptionError(
        `Cannot map identity memory: relocationAttemptsMax ${
          describeValue(this.#attemptsMax)
        } is not a non-negative integer`,
      );
    }
  }

  /** Identity-maps every range it can, then relocates the rest above the highest mapping. */
  mapAll(ranges: readonly AddressRange[]): RegionMapping[] {
    const failures = new Map<number, string>();
    ranges.forEach((range, index) => {
      const attempt = this.#mapAt(range.start, range.length);
      if (!attempt.ok) failures.set(index, attempt.reason);
    });
    if (failures.size > 0 && !this.#relocate) {
      const [index, reason] = [...failures][0];
      throw new MappingFailedError(
        `Cannot map ${hex(ranges[index].start)}-${
          hex(ranges[index].start + ranges[index].length)
        } at its physical address: ${reason}`,
      );
    }
    const bases = new Map<number, number>();
    for (const [index, reason] of failures) {
      bases.set(index, this.#placeRelocated(ranges[index], reason));
    }
    return ranges.map((range, index) => {
      const base = bases.get(index) ?? range.start;
      const reason = failures.get(index);
      return {
        physicalBase: range.start,
        base,
        lengthBytes: range.length,
        kind: reason === undefined ? "identity" : "relocated",
        offsetBytes: base - range.start,
        ...(reason === undefined ? {} : { reason }),
      };
    });
  }

  /**
   * Maps the gaps between `mappings` (zero pages that cost nothing until
   * touched; no region holds them, so the allocator never does): the
   * window's ArrayBuffer spans them, and a read of an unmapped gap through
   * it (a caller's `view.buffer`, a forged free link a check follows) would
   * kill the process. Another mapping can no longer land in a gap and be
   * reached through the window. Where something else in this process holds
   * part of a gap already, the rest is mapped around it, in halves (at most
   * GAP_FILL_CALLS_MAX calls in all).
   *
   * @param mappings The ranges mapped for the regions.
   * @param pageBytes The host's page size.
   * @returns The pieces of the gaps it mapped.
   */
  fillGaps(mappings: readonly RegionMapping[], pageBytes: number): MappedRange[] {
    const sorted = [...mappings].sort((a, b) => a.base - b.base);
    const fills: MappedRange[] = [];
    const budget = { calls: GAP_FILL_CALLS_MAX };
    for (let index = 1; index < sorted.length; index++) {
      const start = sorted[index - 1].base + sorted[index - 1].lengthBytes;
      this.#fill(start, sorted[index].base - start, pageBytes, fills, budget);
    }
    return fills;
  }

  /**
   * Maps `[start, start + lengthBytes)`, or, where another mapping holds part
   * of it, its halves in turn (page-aligned), until the free parts are mapped
   * or the budget of mmap calls runs out.
   */
  #fill(
    start: number,
    lengthBytes: number,
    pageBytes: number,
    fills: MappedRange[],
    budget: { calls: number },
  ): void {
    if (lengthBytes <= 0 || budget.calls <= 0) return;
    budget.calls--;
    if (this.#mapAt(start, lengthBytes).ok) {
      fills.push({ base: start, lengthBytes });
      return;
    }
    if (lengthBytes <= pageBytes) return;
    const half = Math.floor(lengthBytes / 2 / pageBytes) * pageBytes || pageBytes;
    this.#fill(start, half, pageBytes, fills, budget);
    this.#fill(start + half, lengthBytes - half, pageBytes, fills, budget);
  }

  /** Maps `lengthBytes` exactly at `address` with MAP_FIXED_NOREPLACE, never elsewhere. */
  #mapAt(address: number, lengthBytes: number): Attempt {
    const symbols = this.#libc.symbols;
    const hint = Deno.UnsafePointer.create(BigInt(address));
    const pointer = symbols.mmap(hint, BigInt(lengthBytes), PROTECTION, FIXED_FLAGS, -1, 0n);
    const value = pointerValue(pointer);
    if (value === MAP_FAILED) {
      const errno = lastErrno(this.#libc);
      return { ok: false, reason: errnoName(errno), errno };
    }
    if (value !== BigInt(address)) {
      // A kernel before 4.17 treats NOREPLACE as a hint and maps elsewhere.
      symbols.munmap(pointer, BigInt(lengthBytes));
      return { ok: false, reason: `kernel mapped it at 0x${value.toString(16)} instead`, errno: 0 };
    }
    this.#mapped.push({ base: address, lengthBytes });
    return { ok: true };
  }

  /** Places a range that could not be identity-mapped; returns its base. */
  #placeRelocated(range: AddressRange, identityReason: string): number {
    const phase = range.start % RELOCATION_ALIGN_BYTES;
    const strideBytes = alignUp(range.length, RELOCATION_ALIGN_BYTES);
    const highestEnd = this.#highestEnd();
    if (highestEnd !== undefined) {
      const first = alignUp(highestEnd, RELOCATION_ALIGN_BYTES) + phase;
      for (let attempt = 0; attempt < this.#attemptsMax; attempt++) {
        const candidate = first + attempt * strideBytes;
        if (!Number.isSafeInteger(candidate + range.length)) break;
        const result = this.#mapAt(candidate, range.length);
        if (result.ok) return candidate;
        if (result.errno !== 0 && result.errno !== 17) break; // past the address space, not just taken
      }
    }
    const candidate = this.#kernelChosen(range.length, phase);
    if (candidate !== undefined && this.#mapAt(candidate, range.length).ok) return candidate;
    throw new MappingFailedError(
      `Cannot map ${hex(range.start)}-${
        hex(range.start + range.length)
      }: ${identityReason} at its physical address and no relocation succeeded`,
    );
  }

  /** Asks the kernel for a free range big enough to hold the region at the right 2 MiB phase. */
  #kernelChosen(lengthBytes: number, phase: number): number | undefined {
    const symbols = this.#libc.symbols;
    const probeBytes = BigInt(lengthBytes + 2 * RELOCATION_ALIGN_BYTES);
    const pointer = symbols.mmap(null, probeBytes, PROTECTION, FLOATING_FLAGS, -1, 0n);
    const value = pointerValue(pointer);
    if (value === MAP_FAILED) return undefined;
    symbols.munmap(pointer, probeBytes);
    return alignUp(Number(value), RELOCATION_ALIGN_BYTES) + phase;
  }

  #highestEnd(): number | undefined {
    let highest: number | undefined;
    for (const { base, lengthBytes } of this.#mapped) {
      highest = Math.max(highest ?? 0, base + lengthBytes);
    }
    return highest;
  }

  /** Unmaps everything this mapper mapped (after a failure). */
  unmapAll(): void {
    for (const { base, lengthBytes } of this.#mapped.splice(0)) {
      this.#libc.symbols.munmap(Deno.UnsafePointer.create(BigInt(base)), BigInt(lengthBytes));
    }
  }
}

/** The memory handed to callers: regions over one window, unmapped once on close. */
class MappedMemory implements IdentityMemory {
  readonly regions: readonly MemoryRegion[];
  readonly mappings: readonly RegionMapping[];
  readonly windowBase: number;
  readonly windowBytes: number;
  #libc: Libc;
  #window: ArrayBuffer;
  #closed = false;

  /**
   * What it unmaps besides its regions' mappings: the gaps Mapper.fillGaps
   * mapped, and ranges other identity memories gave it at their close.
   */
  readonly #fills: MappedRange[];

  constructor(libc: Libc, mappings: readonly RegionMapping[], fills: readonly MappedRange[]) {
    this.#libc = libc;
    this.mappings = mappings;
    this.#fills = [...fills];
    this.windowBase = Math.min(...mappings.map((m) => m.base));
    const windowEnd = Math.max(...mappings.map((m) => m.base + m.lengthBytes));
    this.windowBytes = windowEnd - this.windowBase;
    const pointer = Deno.UnsafePointer.create(BigInt(this.windowBase));
    if (pointer === null) throw new MappingFailedError("Cannot map identity memory: window at 0x0");
    this.#window = Deno.UnsafePointerView.getArrayBuffer(pointer, this.windowBytes);
    this.regions = mappings.map((mapping) => ({
      base: mapping.base,
      bytes: new Uint8Array(this.#window, mapping.base - this.windowBase, mapping.lengthBytes),
      ...(mapping.kind === "relocated" ? { physicalBase: mapping.physicalBase } : {}),
    }));
    OPEN_MEMORIES.add(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Detach first: every view over the window becomes empty, so nothing can
    // read the pages after munmap (which would be a SIGSEGV, not an exception).
    try {
      this.#window.transfer();
    } catch {
      // A runtime that cannot detach external buffers: the `closed` flag,
      // which the allocator checks before every access, is the only guard left.
    }
    OPEN_MEMORIES.delete(this);
    const failures: string[] = [];
    const pieces: MappedRange[] = [...this.mappings, ...this.#fills];
    while (pieces.length > 0) {
      const piece = pieces.pop()!;
      const end = piece.base + piece.lengthBytes;
      // Inside another open memory's window (it mapped its gaps around this
      // one's ranges), a range becomes zero pages that memory keeps: an
      // unmapped hole in its window would kill the process when read.
      const keeper = [...OPEN_MEMORIES].find((other) =>
        other.windowBase < end && piece.base < other.windowBase + other.windowBytes
      );
      if (keeper !== undefined) {
        const from = Math.max(piece.base, keeper.windowBase);
        const to = Math.min(end, keeper.windowBase + keeper.windowBytes);
        if (this.#zeroPages(from, to - from)) {
          keeper.#fills.push({ base: from, lengthBytes: to - from });
          if (piece.base < from) pieces.push({ base: piece.base, lengthBytes: from - piece.base });
          if (to < end) pieces.push({ base: to, lengthBytes: end - to });
          continue;
        }
      }
      const pointer = Deno.UnsafePointer.create(BigInt(piece.base));
      if (this.#libc.symbols.munmap(pointer, BigInt(piece.lengthBytes)) !== 0) {
        failures.push(`${hex(piece.base)}: ${errnoName(lastErrno(this.#libc))}`);
      }
    }
    this.#libc.close();
    if (failures.length > 0) {
      throw new MappingFailedError(
        `Cannot unmap ${failures.length} range(s): ${failures.join(", ")}`,
      );
    }
  }

  /** Replaces what this memory mapped at `[base, base + lengthBytes)` with fresh zero pages. */
  #zeroPages(base: number, lengthBytes: number): boolean {
    const hint = Deno.UnsafePointer.create(BigInt(base));
    const pointer = this.#libc.symbols.mmap(
      hint,
      BigInt(lengthBytes),
      PROTECTION,
      MAP_FIXED | MAP_NORESERVE | MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    return pointerValue(pointer) === BigInt(base);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Every identity memory not closed yet (see MappedMemory.close). */
const OPEN_MEMORIES = new Set<MappedMemory>();
