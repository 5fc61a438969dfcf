/**
 * Normalisation: from a firmware map as given (unsorted, overlapping,
 * unaligned) to the page-aligned usable ranges an allocator may manage, with
 * every input byte accounted for.
 *
 * Steps, in order:
 * 1. Sort and resolve overlaps. Where entries overlap, the strongest type wins,
 *    in the order of `MEMORY_TYPES`: usable < reserved < acpi < nvs < unusable
 *    < unknown. This is what Linux's `e820__update_table` does (the higher
 *    E820 type wins), so usable memory never wins over anything else. No
 *    overlap is ambiguous under this rule, so none is an error by default: two
 *    usable entries that overlap simply merge. Overlaps are not silent either:
 *    the report counts them (`overlapBytes`) and lists them, and
 *    `rejectOverlaps: true` turns any overlap into a `MemoryMapError` naming
 *    both entries, for callers that want a firmware map to be clean.
 * 2. Merge adjacent ranges of the same type.
 * 3. Carve reservations out of usable memory (like Linux `memblock_reserve`):
 *    for example the kernel image. Reserved bytes outside usable memory are
 *    already not handed out and are not counted again.
 * 4. Clip each usable range inward to page boundaries (partial pages are
 *    "clipped").
 * 5. Drop page 0 and everything below `vm.mmap_min_addr` (user space cannot map
 *    it, so it cannot be identity-mapped), then drop ranges smaller than
 *    `minRegionBytes` ("dropped").
 *
 * The report's spans cover every address any entry covers exactly once, in
 * address order, so `usableBytes + reservedBytes + clippedBytes + droppedBytes
 * === coveredBytes` and `coveredBytes + overlapBytes === inputBytes`, where
 * `inputBytes` is the sum of the entries' sizes as given.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import { arrayInput, entriesInput, readMapInput, recordInput } from "./input.ts";
import { HEADER_BYTES, MIN_BLOCK_BYTES } from "../heap/layout.ts";
import { type AddressRange, describeValue } from "../memory/physical_memory.ts";
import {
  ADDRESS_LIMIT,
  MEMORY_TYPES,
  type MemoryMapEntry,
  type MemoryType,
  PAGE_BYTES,
} from "./entry.ts";

/** A range the allocator must never hand out, with the reason. */
export interface Reservation {
  /** Address of the first reserved byte. */
  readonly start: number;
  /** Reserved bytes. */
  readonly length: number;
  /** Why, for the report: `"kernel image"`, `"initrd"`. */
  readonly label: string;
}

/** What normalisation did with a span of addresses. */
export type Disposition = "usable" | "reserved" | "clipped" | "dropped";

/** A span of addresses with one fate. */
export interface AccountedSpan {
  /** First address. */
  readonly start: number;
  /** One past the last address. */
  readonly end: number;
  /** `end - start`. */
  readonly sizeBytes: number;
  /** What happened to it. */
  readonly disposition: Disposition;
  /** The resolved firmware type of the span. */
  readonly type: MemoryType;
  /** Why, in words: `"firmware reserved"`, `"reserved: kernel image"`, `"page 0"`. */
  readonly reason: string;
}

/** Bytes per (disposition, reason) pair. */
export interface ReasonTotal {
  /** The disposition. */
  readonly disposition: Disposition;
  /** The reason. */
  readonly reason: string;
  /** Total bytes with this disposition and reason. */
  readonly sizeBytes: number;
  /** How many spans have it. */
  readonly spanCount: number;
}

/** A range claimed by more than one input entry. */
export interface OverlapRecord {
  /** First address. */
  readonly start: number;
  /** One past the last address. */
  readonly end: number;
  /** The type that won. */
  readonly type: MemoryType;
  /** The origins of the overlapping entries. */
  readonly origins: readonly string[];
}

/** A reservation as applied. */
export interface ReservationRecord extends Reservation {
  /** Bytes it took out of usable memory (overlaps with earlier reservations count once, for the first). */
  readonly carvedBytes: number;
}

/** Where every input byte went. */
export interface MemoryMapReport {
  /** Sum of the input entries' sizes, overlaps counted each time. */
  readonly inputBytes: number;
  /** Bytes claimed by more than one entry, counted once per extra claim. */
  readonly overlapBytes: number;
  /** Bytes covered by at least one entry: `inputBytes - overlapBytes`. */
  readonly coveredBytes: number;
  /** Bytes in the usable ranges. */
  readonly usableBytes: number;
  /** Bytes of non-usable types plus bytes carved out by reservations. */
  readonly reservedBytes: number;
  /** Partial pages cut from the edges of usable ranges. */
  readonly clippedBytes: number;
  /** Whole pages of usable memory dropped (page 0, below mmap_min_addr, too small). */
  readonly droppedBytes: number;
  /** Every covered address exactly once, in address order. */
  readonly spans: readonly AccountedSpan[];
  /** Totals per disposition and reason, in first-appearance order. */
  readonly reasons: readonly ReasonTotal[];
  /** The overlaps found, in address order (at most `OVERLAPS_LISTED_MAX`). */
  readonly overlaps: readonly OverlapRecord[];
  /** The reservations, sorted by start, with the bytes each carved. */
  readonly reservations: readonly ReservationRecord[];
}

/** The result of normalisation. */
export interface NormalizedMemoryMap {
  /** The page-aligned usable ranges, sorted, not overlapping, not adjacent. */
  readonly usable: readonly AddressRange[];
  /** The firmware map sorted with overlaps resolved and same-type neighbours merged. */
  readonly resolved: readonly MemoryMapEntry[];
  /** Byte accounting. */
  readonly report: MemoryMapReport;
}

/** Options of {@linkcode normalizeMemoryMap}. */
export interface NormalizeOptions {
  /**
   * The lowest address user space may map (Linux `vm.mmap_min_addr`); usable
   * memory below it is dropped. `readMmapMinAddress()` (memory_map_host.ts)
   * reads the host's value.
   * @default {65536}
   */
  readonly mmapMinAddress?: number;
  /**
   * The page size usable ranges are clipped to; a power of two.
   * @default {4096}
   */
  readonly pageBytes?: number;
  /**
   * Usable ranges smaller than this are dropped.
   * @default {MIN_REGION_BYTES}
   */
  readonly minRegionBytes?: number;
  /**
   * Ranges to carve out of usable memory.
   * @default {[]}
   */
  readonly reservations?: readonly Reservation[];
  /**
   * Throw on any overlap between entries instead of resolving it.
   * @default {false}
   */
  readonly rejectOverlaps?: boolean;
}

/** The default `vm.mmap_min_addr` when the host's cannot be read: Linux's default on x86-64. */
export const DEFAULT_MMAP_MIN_ADDRESS = 65536;

/** The smallest region worth keeping: one minimum block plus one header of alignment slack. */
export const MIN_REGION_BYTES: number = MIN_BLOCK_BYTES + HEADER_BYTES;

/** The report lists at most this many overlaps (it still counts all of their bytes). */
export const OVERLAPS_LISTED_MAX = 64;

/**
 * Normalises a memory map (see the module doc for the steps).
 *
 * @param entries The map as parsed, in any order.
 * @param options Page size, mmap_min_addr, reservations, overlap strictness.
 * @returns The usable ranges, the resolved map and the byte accounting.
 * @throws {MemoryMapError} If the map is empty, an entry or reservation is
 *   malformed (naming it), an option is invalid, or `rejectOverlaps` is set
 *   and two entries overlap (naming both).
 *
 * @example Reserved wins, edges are clipped, page 0 is dropped
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeMemoryMap } from "./normalize.ts";
 *
 * const { usable, report } = normalizeMemoryMap([
 *   { start: 0, end: 0x9fc00, type: "usable" },
 *   { start: 0x100000, end: 0x800000, type: "usable" },
 *   { start: 0x700000, end: 0x900000, type: "reserved" },
 * ], { mmapMinAddress: 4096, reservations: [{ start: 0x100000, length: 0x1800, label: "kernel image" }] });
 * assert.deepEqual(usable, [{ start: 0x1000, length: 0x9e000 }, { start: 0x102000, length: 0x5fe000 }]);
 * assert.equal(report.usableBytes + report.reservedBytes + report.clippedBytes + report.droppedBytes, report.coveredBytes);
 * assert.equal(report.overlapBytes, 0x100000);
 * ```
 */
export function normalizeMemoryMap(
  entries: readonly MemoryMapEntry[],
  options: NormalizeOptions = {},
): NormalizedMemoryMap {
  // Each field read once, into copies the checks and the work share.
  const settings = checkOptions(optionsInput(options));
  entries = entriesInput(entries, "normalise memory map");
  if (entries.length === 0) {
    throw new MemoryMapError("Cannot normalise memory map: it has no entries");
  }
  entries.forEach(checkEntry);
  const sweep = resolveOverlaps(entries, settings.rejectOverlaps);
  const reservations = [...settings.reservations].sort((a, b) => a.start - b.start);
  const carved = new Array<number>(reservations.length).fill(0);
  // endsBy[i]: the furthest end of reservations 0..i. The runs come in
  // address order, so the reservations wholly before a run (every one up to
  // some index ends at or before its start) never touch a later run either.
  const endsBy: number[] = [];
  for (const reservation of reservations) {
    endsBy.push(Math.max(endsBy.at(-1) ?? 0, reservation.start + reservation.length));
  }
  let first = 0;
  const spans: AccountedSpan[] = [];
  for (const run of sweep.resolved) {
    if (run.type !== "usable") {
      pushSpan(spans, run.start, run.end, "reserved", run.type, `firmware ${run.type}`);
      continue;
    }
    while (first < reservations.length && endsBy[first] <= run.start) first++;
    for (const piece of carve(run, reservations, first, carved)) {
      if (piece.label !== undefined) {
        pushSpan(spans, piece.start, piece.end, "reserved", "usable", `reserved: ${piece.label}`);
      } else {
        accountUsable(spans, piece.start, piece.end, settings);
      }
    }
  }
  const report = buildReport(entries, sweep, spans, reservations, carved);
  const usable = spans
    .filter((span) => span.disposition === "usable")
    .map((span) => ({ start: span.start, length: span.sizeBytes }));
  return { usable, resolved: sweep.resolved, report };
}

/** The fields of {@linkcode NormalizeOptions}. */
export const NORMALIZE_OPTION_KEYS: readonly string[] = [
  "mmapMinAddress",
  "pageBytes",
  "minRegionBytes",
  "reservations",
  "rejectOverlaps",
];

/** The options as the caller passed them, each read once; reservations copied too. */
function optionsInput(options: unknown): NormalizeOptions {
  const subject = "normalise memory map";
  return readMapInput(subject, () => {
    const copy = recordInput(options ?? {}, NORMALIZE_OPTION_KEYS, subject, "options");
    if (copy.reservations !== undefined) {
      copy.reservations = arrayInput(copy.reservations, subject, "reservation").map((
        reservation,
        index,
      ) => recordInput(reservation, ["start", "length", "label"], subject, `reservation ${index}`));
    }
    return copy as NormalizeOptions;
  });
}

interface Settings {
  readonly mmapMinAddress: number;
  readonly pageBytes: number;
  readonly minRegionBytes: number;
  readonly reservations: readonly Reservation[];
  readonly rejectOverlaps: boolean;
}

function checkOptions(options: NormalizeOptions): Settings {
  const pageBytes = options.pageBytes ?? PAGE_BYTES;
  // Math.log2, not a bitwise test: `&` truncates to 32 bits, so 3 * 2^31 would pass it.
  if (
    typeof pageBytes !== "number" || !Number.isSafeInteger(pageBytes) || pageBytes < 1 ||
    pageBytes !== 2 ** Math.round(Math.log2(pageBytes))
  ) {
    throw new MemoryMapError(
      `Cannot normalise memory map: pageBytes ${describeValue(pageBytes)} is not a power of two`,
    );
  }
  const mmapMinAddress = options.mmapMinAddress ?? DEFAULT_MMAP_MIN_ADDRESS;
  if (!Number.isSafeInteger(mmapMinAddress) || mmapMinAddress < 0) {
    throw new MemoryMapError(
      `Cannot normalise memory map: mmapMinAddress ${
        describeValue(mmapMinAddress)
      } is not a non-negative integer`,
    );
  }
  const minRegionBytes = options.minRegionBytes ?? MIN_REGION_BYTES;
  if (!Number.isSafeInteger(minRegionBytes) || minRegionBytes < 1) {
    throw new MemoryMapError(
      `Cannot normalise memory map: minRegionBytes ${
        describeValue(minRegionBytes)
      } is not a positive integer`,
    );
  }
  const reservations = options.reservations ?? [];
  reservations.forEach(checkReservation);
  const rejectOverlaps = options.rejectOverlaps ?? false;
  if (typeof rejectOverlaps !== "boolean") {
    throw new MemoryMapError(
      `Cannot normalise memory map: rejectOverlaps ${
        describeValue(rejectOverlaps)
      } is not a boolean`,
    );
  }
  return {
    mmapMinAddress,
    pageBytes,
    minRegionBytes,
    reservations,
    rejectOverlaps,
  };
}

/** Throws MemoryMapError naming entry `index` when it is malformed. */
export function checkEntry(entry: MemoryMapEntry, index: number): void {
  const where = typeof entry.origin === "string" ? entry.origin : `entry ${index}`;
  const { start, end } = entry;
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new MemoryMapError(
      `Cannot normalise ${where}: start ${describeValue(start)} is not a non-negative integer`,
    );
  }
  if (!Number.isSafeInteger(end) || end > ADDRESS_LIMIT - 1) {
    throw new MemoryMapError(
      `Cannot normalise ${where}: end ${describeValue(end)} is not an integer below 2^53`,
    );
  }
  if (end <= start) {
    throw new MemoryMapError(
      `Cannot normalise ${where}: end 0x${end.toString(16)} is not after start 0x${
        start.toString(16)
      }`,
    );
  }
  if (!MEMORY_TYPES.includes(entry.type)) {
    throw new MemoryMapError(
      `Cannot normalise ${where}: unknown memory type ${describeValue(entry.type)}`,
    );
  }
}

/** Throws MemoryMapError naming reservation `index` when it is malformed. */
export function checkReservation(reservation: Reservation, index: number): void {
  const { start, length, label } = reservation;
  const where = `reservation ${index} (${describeValue(label)})`;
  if (typeof label !== "string" || label.trim() === "") {
    throw new MemoryMapError(`Cannot reserve ${where}: its label must be a non-empty string`);
  }
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new MemoryMapError(
      `Cannot reserve ${where}: start ${describeValue(start)} is not a non-negative integer`,
    );
  }
  if (!Number.isSafeInteger(length) || length <= 0) {
    throw new MemoryMapError(
      `Cannot reserve ${where}: length ${describeValue(length)} is not a positive integer`,
    );
  }
  if (start + length >= ADDRESS_LIMIT) {
    throw new MemoryMapError(`Cannot reserve ${where}: it ends at or past 2^53`);
  }
}

interface Sweep {
  readonly resolved: MemoryMapEntry[];
  readonly overlapBytes: number;
  readonly overlaps: OverlapRecord[];
}

/**
 * Sweeps the entries' boundaries once, keeping a count per type, so each
 * elementary interval gets the strongest covering type in O(n log n).
 */
function resolveOverlaps(entries: readonly MemoryMapEntry[], rejectOverlaps: boolean): Sweep {
  const events: { address: number; delta: number; typeIndex: number }[] = [];
  for (const entry of entries) {
    const typeIndex = MEMORY_TYPES.indexOf(entry.type);
    events.push({ address: entry.start, delta: 1, typeIndex });
    events.push({ address: entry.end, delta: -1, typeIndex });
  }
  events.sort((a, b) => a.address - b.address);
  const counts = new Array<number>(MEMORY_TYPES.length).fill(0);
  const resolved: MemoryMapEntry[] = [];
  const overlaps: OverlapRecord[] = [];
  let overlapBytes = 0;
  let active = 0;
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    counts[event.typeIndex] += event.delta;
    active += event.delta;
    const next = events[index + 1];
    if (next === undefined || next.address === event.address || active === 0) continue;
    const start = event.address;
    const end = next.address;
    const type = MEMORY_TYPES[strongestType(counts)];
    if (active > 1) {
      if (rejectOverlaps) throw overlapError(entries, start);
      overlapBytes += (active - 1) * (end - start);
      recordOverlap(overlaps, entries, start, end, type);
    }
    const last = resolved[resolved.length - 1];
    if (last !== undefined && last.end === start && last.type === type) {
      resolved[resolved.length - 1] = { start: last.start, end, type };
    } else {
      resolved.push({ start, end, type });
    }
  }
  return { resolved, overlapBytes, overlaps };
}

function strongestType(counts: readonly number[]): number {
  for (let typeIndex = counts.length - 1; typeIndex >= 0; typeIndex--) {
    if (counts[typeIndex] > 0) return typeIndex;
  }
  throw new MemoryMapError("Cannot normalise memory map: sweep lost track of its entries");
}

function coveringOrigins(entries: readonly MemoryMapEntry[], address: number): string[] {
  const origins: string[] = [];
  entries.forEach((entry, index) => {
    if (entry.start <= address && address < entry.end) {
      origins.push(entry.origin ?? `entry ${index}`);
    }
  });
  return origins;
}

function overlapError(entries: readonly MemoryMapEntry[], address: number): MemoryMapError {
  const origins = coveringOrigins(entries, address);
  return new MemoryMapError(
    `Cannot normalise memory map: ${origins.join(" and ")} overlap at 0x${address.toString(16)}`,
  );
}

function recordOverlap(
  overlaps: OverlapRecord[],
  entries: readonly MemoryMapEntry[],
  start: number,
  end: number,
  type: MemoryType,
): void {
  const last = overlaps[overlaps.length - 1];
  if (last !== undefined && last.end === start && last.type === type) {
    overlaps[overlaps.length - 1] = { ...last, end };
    return;
  }
  if (overlaps.length >= OVERLAPS_LISTED_MAX) return;
  overlaps.push({ start, end, type, origins: coveringOrigins(entries, start) });
}

interface Piece {
  readonly start: number;
  readonly end: number;
  readonly label?: string;
}

/** Splits a usable run at the reservations (sorted by start); the first reservation covering a byte claims it. */
function carve(
  run: MemoryMapEntry,
  reservations: readonly Reservation[],
  first: number,
  carved: number[],
): Piece[] {
  const pieces: Piece[] = [];
  let cursor = run.start;
  // Sorted by start: none from the first one starting at or past the run's end can touch it.
  for (let index = first; index < reservations.length; index++) {
    const reservation = reservations[index];
    if (reservation.start >= run.end) break;
    const start = Math.max(reservation.start, cursor);
    const end = Math.min(reservation.start + reservation.length, run.end);
    if (start >= end) continue;
    if (start > cursor) pieces.push({ start: cursor, end: start });
    pieces.push({ start, end, label: reservation.label });
    carved[index] += end - start;
    cursor = end;
  }
  if (cursor < run.end) pieces.push({ start: cursor, end: run.end });
  return pieces;
}

/** Accounts one usable piece: clip to pages, drop the unmappable low pages, drop what is too small. */
function accountUsable(
  spans: AccountedSpan[],
  start: number,
  end: number,
  settings: Settings,
): void {
  const { pageBytes, mmapMinAddress, minRegionBytes } = settings;
  const alignedStart = Math.ceil(start / pageBytes) * pageBytes;
  const alignedEnd = Math.floor(end / pageBytes) * pageBytes;
  if (alignedStart >= alignedEnd) {
    pushSpan(spans, start, end, "clipped", "usable", "less than one whole page");
    return;
  }
  pushSpan(spans, start, alignedStart, "clipped", "usable", "partial page");
  const pageZeroEnd = Math.min(alignedEnd, Math.max(alignedStart, pageBytes));
  pushSpan(spans, alignedStart, pageZeroEnd, "dropped", "usable", "page 0");
  const floor = Math.ceil(mmapMinAddress / pageBytes) * pageBytes;
  const lowEnd = Math.min(alignedEnd, Math.max(pageZeroEnd, floor));
  pushSpan(
    spans,
    pageZeroEnd,
    lowEnd,
    "dropped",
    "usable",
    `below vm.mmap_min_addr 0x${mmapMinAddress.toString(16)}`,
  );
  if (alignedEnd - lowEnd >= minRegionBytes) {
    pushSpan(spans, lowEnd, alignedEnd, "usable", "usable", "usable");
  } else {
    pushSpan(
      spans,
      lowEnd,
      alignedEnd,
      "dropped",
      "usable",
      `smaller than ${minRegionBytes} bytes`,
    );
  }
  pushSpan(spans, alignedEnd, end, "clipped", "usable", "partial page");
}

/** Appends a span, merging it into the previous one when they touch and agree; skips empty spans. */
function pushSpan(
  spans: AccountedSpan[],
  start: number,
  end: number,
  disposition: Disposition,
  type: MemoryType,
  reason: string,
): void {
  if (end <= start) return;
  const last = spans[spans.length - 1];
  if (
    last !== undefined && last.end === start && last.disposition === disposition &&
    last.type === type && last.reason === reason
  ) {
    spans[spans.length - 1] = { ...last, end, sizeBytes: end - last.start };
    return;
  }
  spans.push({ start, end, sizeBytes: end - start, disposition, type, reason });
}

function buildReport(
  entries: readonly MemoryMapEntry[],
  sweep: Sweep,
  spans: readonly AccountedSpan[],
  reservations: readonly Reservation[],
  carved: readonly number[],
): MemoryMapReport {
  const inputBytes = entries.reduce((sum, entry) => sum + (entry.end - entry.start), 0);
  const coveredBytes = sweep.resolved.reduce((sum, run) => sum + (run.end - run.start), 0);
  const totals: Record<Disposition, number> = { usable: 0, reserved: 0, clipped: 0, dropped: 0 };
  const reasons = new Map<string, ReasonTotal>();
  for (const span of spans) {
    totals[span.disposition] += span.sizeBytes;
    const key = `${span.disposition}\u0000${span.reason}`;
    const previous = reasons.get(key);
    reasons.set(key, {
      disposition: span.disposition,
      reason: span.reason,
      sizeBytes: (previous?.sizeBytes ?? 0) + span.sizeBytes,
      spanCount: (previous?.spanCount ?? 0) + 1,
    });
  }
  const accountedBytes = totals.usable + totals.reserved + totals.clipped + totals.dropped;
  if (accountedBytes !== coveredBytes || coveredBytes + sweep.overlapBytes !== inputBytes) {
    throw new MemoryMapError(
      `Cannot normalise memory map: byte accounting broke: ${accountedBytes} accounted, ${coveredBytes} covered, ${inputBytes} input`,
    );
  }
  return {
    inputBytes,
    overlapBytes: sweep.overlapBytes,
    coveredBytes,
    usableBytes: totals.usable,
    reservedBytes: totals.reserved,
    clippedBytes: totals.clipped,
    droppedBytes: totals.dropped,
    spans,
    reasons: [...reasons.values()],
    overlaps: sweep.overlaps,
    reservations: reservations.map((reservation, index) => ({
      ...reservation,
      carvedBytes: carved[index],
    })),
  };
}
