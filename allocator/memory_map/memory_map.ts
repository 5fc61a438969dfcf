/**
 * MemoryMap: the map API a boot path uses, in the style of Linux memblock.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import type { MemoryMapEntry } from "./entry.ts";
import { arrayInput, entriesInput, readMapInput, recordInput } from "./input.ts";
import {
  checkEntry,
  checkReservation,
  NORMALIZE_OPTION_KEYS,
  type NormalizedMemoryMap,
  normalizeMemoryMap,
  type NormalizeOptions,
  type Reservation,
} from "./normalize.ts";

/**
 * A memory map being prepared for an allocator, in the style of Linux
 * memblock: parse, {@linkcode MemoryMap.reserve} what must never be handed
 * out, then {@linkcode MemoryMap.normalize}.
 *
 * @example Reserving the kernel image before allocation starts
 * ```ts
 * import assert from "node:assert/strict";
 * import { MemoryMap } from "@phys/allocator";
 *
 * const map = new MemoryMap([{ start: 0x100000, end: 0x1000000, type: "usable" }]);
 * map.reserve(0x100000, 0x200000, "kernel image");
 * const { usable, report } = map.normalize();
 * assert.deepEqual(usable, [{ start: 0x300000, length: 0xd00000 }]);
 * assert.equal(report.reservations[0].carvedBytes, 0x200000);
 * ```
 */
export class MemoryMap {
  /** The entries as given. */
  readonly entries: readonly MemoryMapEntry[];
  #reservations: Reservation[] = [];

  /**
   * Wraps parsed entries.
   *
   * @param entries The map as parsed, in any order.
   * @throws {MemoryMapError} If there are no entries or one is malformed.
   */
  constructor(entries: readonly MemoryMapEntry[]) {
    // Each field read once, into copies (input.ts).
    const copies = entriesInput(entries, "create memory map");
    if (copies.length === 0) {
      throw new MemoryMapError("Cannot create memory map: it has no entries");
    }
    copies.forEach(checkEntry);
    this.entries = copies;
  }

  /** The reservations made so far, in call order. */
  get reservations(): readonly Reservation[] {
    return [...this.#reservations];
  }

  /**
   * Marks `[start, start + length)` as never to be handed out, like Linux
   * `memblock_reserve`. Only the part inside usable memory has an effect.
   *
   * @param start First reserved address.
   * @param length Reserved bytes.
   * @param label Why, for the report.
   * @returns This map, for chaining.
   * @throws {MemoryMapError} If the range or label is malformed.
   */
  reserve(start: number, length: number, label: string): this {
    const reservation = { start, length, label };
    checkReservation(reservation, this.#reservations.length);
    this.#reservations.push(reservation);
    return this;
  }

  /**
   * Normalises the map with the reservations made so far.
   *
   * @param options As for {@linkcode normalizeMemoryMap}; `reservations` given
   *   here are applied after the ones made with `reserve`.
   * @returns The usable ranges, the resolved map and the byte accounting.
   * @throws {MemoryMapError} As {@linkcode normalizeMemoryMap} does.
   */
  normalize(options: NormalizeOptions = {}): NormalizedMemoryMap {
    const subject = "normalise memory map";
    // The options read once (input.ts); normalizeMemoryMap copies the result again, harmlessly.
    const combined = readMapInput(subject, () => {
      const record = recordInput(options ?? {}, NORMALIZE_OPTION_KEYS, subject, "options");
      const extra = record.reservations === undefined
        ? []
        : arrayInput(record.reservations, subject, "reservation");
      return { ...record, reservations: [...this.#reservations, ...extra] };
    });
    return normalizeMemoryMap(this.entries, combined as NormalizeOptions);
  }
}
