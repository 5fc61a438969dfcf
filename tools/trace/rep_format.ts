/**
 * The malloc-lab `.rep` allocation trace format, read and written.
 *
 * ```text
 * 20000        suggested heap size in bytes
 * 2            number of ids (ids run from 0 to this minus 1)
 * 5            number of operations that follow
 * 1            weight (how much the trace counts in a score)
 * a 0 512      allocate 512 bytes and call the block id 0
 * a 1 128
 * r 0 640      resize block 0 to 640 bytes (it keeps its id)
 * f 1          free block 1
 * f 0
 * ```
 *
 * Real traces carry quirks, all accepted: `f -1` (free of NULL), `r` of an
 * id that was never allocated (realloc of NULL, that is malloc), `r id 0`
 * (realloc to zero bytes), an `a` line with no size (read as size 0), ids
 * at or past the header's id count, and more operation lines than the
 * header says (reading stops at the header's count). Everything else is a
 * {@linkcode TraceFormatError} naming the line.
 *
 * The parsed form keeps the operations in typed arrays, so a trace of a
 * million operations is three flat arrays rather than a million objects.
 *
 * @module
 */

import { TraceFormatError } from "../../allocator/errors.ts";

/** Operation kind of an `a id size` line: allocate. */
export const OP_ALLOC = 0;
/** Operation kind of an `f id` line: free (`f -1` frees NULL). */
export const OP_FREE = 1;
/** Operation kind of an `r id size` line: resize. */
export const OP_REALLOC = 2;

/** The id of `f -1`: a free of the NULL pointer, which does nothing. */
export const NULL_ID = -1;

/** A `.rep` trace as written in the file, operations in typed arrays. */
export interface RepTrace {
  /** Header line 1: the heap size the trace suggests, in bytes. */
  readonly suggestedHeapBytes: number;
  /** Header line 2: the number of ids; real traces may use ids past it. */
  readonly idCount: number;
  /** Header line 4: the trace's weight in a score. */
  readonly weight: number;
  /** The number of operations (header line 3). */
  readonly opCount: number;
  /** Per operation: {@linkcode OP_ALLOC}, {@linkcode OP_FREE} or {@linkcode OP_REALLOC}. */
  readonly kinds: Uint8Array;
  /** Per operation: the block id ({@linkcode NULL_ID} for `f -1`). */
  readonly ids: Int32Array;
  /** Per operation: the requested size in bytes (0 for frees and sizeless `a` lines). */
  readonly sizesBytes: Float64Array;
  /** Per operation: the 1-based line of the source text (0 for traces built in memory). */
  readonly lineNumbers: Uint32Array;
}

const HEADER_LINE_COUNT = 4;
const HEADER_NAMES = ["suggested heap size", "number of ids", "number of operations", "weight"];
/** Ids must fit an Int32Array slot. */
const ID_MAX = 2 ** 31 - 1;

/**
 * Parses the text of a `.rep` trace.
 *
 * @param text The file's text (LF or CRLF line ends).
 * @returns The trace, with exactly the header's number of operations.
 * @throws {TraceFormatError} If a header value or operation line is malformed, naming the
 *   line, or if the text has fewer operations than the header says.
 *
 * @example Reading a trace with real-trace quirks
 * ```ts
 * import assert from "node:assert/strict";
 * import { OP_ALLOC, OP_FREE, parseRep } from "./rep_format.ts";
 *
 * const trace = parseRep("4096\n1\n3\n1\na 0\nf -1\nf 0\nf 0\n");
 * assert.equal(trace.opCount, 3); // the 4th op line is past the header's count
 * assert.equal(trace.kinds[0], OP_ALLOC);
 * assert.equal(trace.sizesBytes[0], 0); // `a` without a size
 * assert.equal(trace.kinds[1], OP_FREE);
 * assert.equal(trace.ids[1], -1); // free of NULL
 * ```
 */
export function parseRep(text: string): RepTrace {
  const lines = text.split("\n");
  const header: number[] = [];
  let lineIndex = 0;
  for (; lineIndex < lines.length && header.length < HEADER_LINE_COUNT; lineIndex++) {
    const line = lines[lineIndex].trim();
    if (line === "") continue;
    header.push(parseHeaderValue(line, lineIndex + 1, header.length));
  }
  if (header.length < HEADER_LINE_COUNT) {
    throw new TraceFormatError(
      `Cannot parse trace: it ends at line ${lines.length} before the ${
        HEADER_NAMES[header.length]
      } header line`,
    );
  }
  const [suggestedHeapBytes, idCount, opCount, weight] = header;
  const kinds = new Uint8Array(opCount);
  const ids = new Int32Array(opCount);
  const sizesBytes = new Float64Array(opCount);
  const lineNumbers = new Uint32Array(opCount);
  let opIndex = 0;
  for (; lineIndex < lines.length && opIndex < opCount; lineIndex++) {
    const line = lines[lineIndex].trim();
    if (line === "") continue;
    const lineNumber = lineIndex + 1;
    parseOpLine(line, lineNumber, opIndex, kinds, ids, sizesBytes);
    lineNumbers[opIndex] = lineNumber;
    opIndex++;
  }
  if (opIndex < opCount) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lines.length}: the trace ends after ${opIndex} operations, the header says ${opCount}`,
    );
  }
  return { suggestedHeapBytes, idCount, weight, opCount, kinds, ids, sizesBytes, lineNumbers };
}

function parseHeaderValue(line: string, lineNumber: number, index: number): number {
  const value = Number(line);
  const isWeight = index === HEADER_LINE_COUNT - 1;
  const valid = isWeight
    ? Number.isFinite(value) && value >= 0
    : Number.isSafeInteger(value) && value >= 0;
  if (!/^[0-9.eE+]+$/.test(line) || !valid) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: the ${HEADER_NAMES[index]} must be a non-negative ${
        isWeight ? "number" : "integer"
      }, found '${line}'`,
    );
  }
  if (index === 2 && value > ID_MAX) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: the number of operations must be at most ${ID_MAX}, found ${value}`,
    );
  }
  return value;
}

function parseOpLine(
  line: string,
  lineNumber: number,
  opIndex: number,
  kinds: Uint8Array,
  ids: Int32Array,
  sizesBytes: Float64Array,
): void {
  const fields = line.split(/\s+/);
  const op = fields[0];
  const maxFields = op === "f" ? 2 : 3;
  if (op !== "a" && op !== "f" && op !== "r") {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: unknown operation '${op}', expected a, f or r`,
    );
  }
  if (fields.length < 2 || fields.length > maxFields || (op === "r" && fields.length < 3)) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: '${line}' has ${fields.length} fields, expected ${
        op === "a" ? "2 or 3" : maxFields
      }`,
    );
  }
  const id = parseInteger(fields[1], "id", lineNumber);
  if (id < (op === "f" ? NULL_ID : 0) || id > ID_MAX) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: id ${id} is out of range for '${op}'`,
    );
  }
  const sizeBytes = fields.length === 3 ? parseInteger(fields[2], "size", lineNumber) : 0;
  if (sizeBytes < 0) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: size ${sizeBytes} is negative`,
    );
  }
  kinds[opIndex] = op === "a" ? OP_ALLOC : op === "f" ? OP_FREE : OP_REALLOC;
  ids[opIndex] = id;
  sizesBytes[opIndex] = sizeBytes;
}

function parseInteger(field: string, name: string, lineNumber: number): number {
  const value = Number(field);
  if (!/^-?[0-9]+$/.test(field) || !Number.isSafeInteger(value)) {
    throw new TraceFormatError(
      `Cannot parse trace line ${lineNumber}: the ${name} must be an integer, found '${field}'`,
    );
  }
  return value;
}

/**
 * Writes a trace as `.rep` text: the four header lines, then one line per
 * operation (`f -1` for a free of NULL, `a id size`, `f id`, `r id size`).
 *
 * @param trace The trace to write.
 * @returns The text, ending with a newline.
 * @throws {TraceFormatError} If an operation kind is unknown.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRep, parseRep } from "./rep_format.ts";
 *
 * const text = "100\n1\n2\n1\na 0 16\nf 0\n";
 * assert.equal(formatRep(parseRep(text)), text);
 * ```
 */
export function formatRep(trace: RepTrace): string {
  const parts: string[] = [
    `${trace.suggestedHeapBytes}\n${trace.idCount}\n${trace.opCount}\n${trace.weight}\n`,
  ];
  const { kinds, ids, sizesBytes } = trace;
  for (let i = 0; i < trace.opCount; i++) {
    const kind = kinds[i];
    if (kind === OP_ALLOC) parts.push(`a ${ids[i]} ${sizesBytes[i]}\n`);
    else if (kind === OP_FREE) parts.push(`f ${ids[i]}\n`);
    else if (kind === OP_REALLOC) parts.push(`r ${ids[i]} ${sizesBytes[i]}\n`);
    else throw new TraceFormatError(`Cannot write trace operation ${i}: unknown kind ${kind}`);
  }
  return parts.join("");
}

/**
 * Builds a trace one operation at a time, growing its typed arrays.
 *
 * @example Building and writing a two-operation trace
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRep, TraceBuilder } from "./rep_format.ts";
 *
 * const builder = new TraceBuilder();
 * const id = builder.alloc(24);
 * builder.free(id);
 * assert.equal(formatRep(builder.build()), "24\n1\n2\n1\na 0 24\nf 0\n");
 * ```
 */
export class TraceBuilder {
  #kinds = new Uint8Array(1024);
  #ids = new Int32Array(1024);
  #sizesBytes = new Float64Array(1024);
  #opCount = 0;
  #nextId = 0;
  #liveBytes = 0;
  #peakLiveBytes = 0;
  #liveSizes = new Map<number, number>();

  /** The number of operations so far. */
  get opCount(): number {
    return this.#opCount;
  }

  /** The most payload bytes live at once so far. */
  get peakLiveBytes(): number {
    return this.#peakLiveBytes;
  }

  /**
   * Appends `a id size` with a fresh id.
   *
   * @param sizeBytes The requested size.
   * @returns The new block's id.
   */
  alloc(sizeBytes: number): number {
    const id = this.#nextId++;
    this.#push(OP_ALLOC, id, sizeBytes);
    this.#setLive(id, sizeBytes, true);
    return id;
  }

  /**
   * Appends `f id` (or `f -1` for {@linkcode NULL_ID}).
   *
   * @param id The id of a live block, or {@linkcode NULL_ID}.
   * @throws {TraceFormatError} If the id is not live.
   */
  free(id: number): void {
    if (id !== NULL_ID) this.#assertLive(id, "free");
    this.#push(OP_FREE, id, 0);
    if (id !== NULL_ID) this.#setLive(id, 0, false);
  }

  /**
   * Appends `r id size`.
   *
   * @param id The id of a live block.
   * @param sizeBytes The new size.
   * @throws {TraceFormatError} If the id is not live.
   */
  realloc(id: number, sizeBytes: number): void {
    this.#assertLive(id, "realloc");
    this.#push(OP_REALLOC, id, sizeBytes);
    this.#setLive(id, sizeBytes, true);
  }

  /**
   * Returns the trace built so far. The suggested heap size is the peak of
   * live payload bytes (at least 1); the weight is 1.
   *
   * @returns A trace owning copies of the operations.
   */
  build(): RepTrace {
    const n = this.#opCount;
    return {
      suggestedHeapBytes: Math.max(1, this.#peakLiveBytes),
      idCount: this.#nextId,
      weight: 1,
      opCount: n,
      kinds: this.#kinds.slice(0, n),
      ids: this.#ids.slice(0, n),
      sizesBytes: this.#sizesBytes.slice(0, n),
      lineNumbers: new Uint32Array(n),
    };
  }

  #assertLive(id: number, what: string): void {
    if (!this.#liveSizes.has(id)) {
      throw new TraceFormatError(`Cannot ${what} id ${id}: it is not live`);
    }
  }

  #setLive(id: number, sizeBytes: number, live: boolean): void {
    this.#liveBytes += sizeBytes - (this.#liveSizes.get(id) ?? 0);
    if (!live) this.#liveSizes.delete(id);
    else this.#liveSizes.set(id, sizeBytes);
    if (this.#liveBytes > this.#peakLiveBytes) this.#peakLiveBytes = this.#liveBytes;
  }

  #push(kind: number, id: number, sizeBytes: number): void {
    if (this.#opCount === this.#kinds.length) {
      const capacity = this.#opCount * 2;
      this.#kinds = grow(this.#kinds, new Uint8Array(capacity));
      this.#ids = grow(this.#ids, new Int32Array(capacity));
      this.#sizesBytes = grow(this.#sizesBytes, new Float64Array(capacity));
    }
    this.#kinds[this.#opCount] = kind;
    this.#ids[this.#opCount] = id;
    this.#sizesBytes[this.#opCount] = sizeBytes;
    this.#opCount++;
  }
}

function grow<T extends Uint8Array | Int32Array | Float64Array>(from: T, to: T): T {
  to.set(from as never);
  return to;
}
