/**
 * Reading a caller's input to the memory-map functions: once, into plain
 * copies, with every failure a {@linkcode MemoryMapError}.
 *
 * A map may come from anywhere (a file, a network, a test's Proxy), and the
 * functions check it before they use it. A value read twice could answer
 * differently the second time (a getter), and a read can throw (a revoked
 * Proxy, a trap): so each field is read exactly once here, into a fresh
 * object or array the checks and the work then share, and anything a read
 * throws becomes a MemoryMapError naming what was being read. Arrays are
 * read up to ENTRIES_MAX elements, holes refused: a sparse array of length
 * 2^32 - 1 would otherwise be walked for minutes.
 *
 * @module
 */

import { MemoryMapError } from "../errors.ts";
import { describeValue, readCallerInput } from "../memory/physical_memory.ts";
import type { MemoryMapEntry } from "./entry.ts";

/** The most entries (or reservations, or directories) one map may have. */
export const ENTRIES_MAX = 1 << 20;

/**
 * Runs `read` over caller input: what it throws, other than the allocator's
 * own errors, becomes a MemoryMapError saying what was read.
 *
 * @param subject What the caller asked for, as in "Cannot {subject}".
 * @param read Reads the input.
 * @returns What `read` returns.
 * @throws {MemoryMapError} If `read` throws anything but an AllocatorError.
 */
export function readMapInput<T>(subject: string, read: () => T): T {
  return readCallerInput(subject, read, MemoryMapError);
}

/**
 * The text argument `text`, which must be a string.
 *
 * @param text Any value.
 * @param subject As in {@linkcode readMapInput}.
 * @returns The text, without a leading byte-order mark.
 * @throws {MemoryMapError} If `text` is not a string.
 */
export function textInput(text: unknown, subject: string): string {
  if (typeof text !== "string") {
    throw new MemoryMapError(`Cannot ${subject}: expected a string, got ${describeValue(text)}`);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * The elements of the array `list`, copied once (inside readMapInput).
 *
 * @param list Any value.
 * @param subject As in {@linkcode readMapInput}.
 * @param what What an element is, for messages: "entry", "reservation".
 * @returns A plain array of the elements.
 * @throws {MemoryMapError} If `list` is no array, is longer than
 *   ENTRIES_MAX, or has a hole.
 */
export function arrayInput(list: unknown, subject: string, what: string): unknown[] {
  if (!Array.isArray(list)) {
    throw new MemoryMapError(
      `Cannot ${subject}: expected an array of ${what} objects, got ${describeValue(list)}`,
    );
  }
  const length = list.length;
  if (length > ENTRIES_MAX) {
    throw new MemoryMapError(
      `Cannot ${subject}: ${length} ${what} objects are more than ${ENTRIES_MAX}`,
    );
  }
  const copy: unknown[] = [];
  for (let index = 0; index < length; index++) {
    if (!(index in list)) {
      throw new MemoryMapError(`Cannot ${subject}: ${what} ${index} is a hole in the array`);
    }
    copy.push(list[index]);
  }
  return copy;
}

/**
 * The fields of `value` named by `keys`, each read once into a plain object.
 *
 * @param value Any value.
 * @param keys The fields to read.
 * @param subject As in {@linkcode readMapInput}.
 * @param where The value's name in messages: "entry 3", "options".
 * @returns A plain object holding exactly the fields `value` has (absent ones stay absent).
 * @throws {MemoryMapError} If `value` is not an object.
 */
export function recordInput(
  value: unknown,
  keys: readonly string[],
  subject: string,
  where: string,
): Record<string, unknown> {
  if (typeof value !== "object" || value === null) {
    throw new MemoryMapError(
      `Cannot ${subject}: ${where} must be an object, got ${describeValue(value)}`,
    );
  }
  const record = value as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const key of keys) {
    if (key in record) copy[key] = record[key];
  }
  return copy;
}

/**
 * The entries of a map as the caller passed them: an array of objects, each
 * field read once. The fields' values are checked later (checkEntry).
 *
 * @param entries Any value.
 * @param subject As in {@linkcode readMapInput}.
 * @returns Plain copies of the entries.
 * @throws {MemoryMapError} If the array or an entry cannot be read as one.
 */
export function entriesInput(entries: unknown, subject: string): MemoryMapEntry[] {
  return readMapInput(
    subject,
    () =>
      arrayInput(entries, subject, "entry").map((entry, index) =>
        recordInput(
          entry,
          ["start", "end", "type", "origin", "firmwareType"],
          subject,
          `entry ${index}`,
        ) as unknown as MemoryMapEntry
      ),
  );
}
