/**
 * Converting the log of `valgrind --trace-malloc=yes` into `.rep` traces.
 *
 * Valgrind 3.19 prints one line per call, prefixed by the process id:
 *
 * ```text
 * --3924-- malloc(16) = 0x4D6DC80
 * --3924-- calloc(3,10) = 0x4D6DCD0
 * --3924-- realloc(0x4D6DC80,100) = 0x4D6DD30
 * --3924-- realloc(0x0,1600)malloc(1600) = 0x4B08A10      realloc of NULL
 * --3924-- realloc(0x4D6DDE0,0)free(0x4D6DDE0)            realloc to 0 bytes ...
 * --3924--  = 0                                           ... its result, on the next line
 * --3924-- memalign(al 64, size 33) = 0x4D6DE80           also posix_memalign, aligned_alloc, valloc
 * --3924-- _Znwm(32) = 0x4D6E0C0                          C++ operator new (and new[], nothrow, aligned)
 * --3924-- free(0x4D6DD30)                                also cfree and operator delete variants
 * ```
 *
 * Each process's text is read as one stream of calls and results. Ids are
 * assigned per live pointer: every allocation gets a fresh id, a realloc
 * keeps the id of the pointer it resizes, so an address handed out again
 * after a free gets a new id. Calls the log cannot pair (a free of a
 * pointer never seen allocated, a result with no call) are counted in
 * {@linkcode ValgrindConversion.anomalies} and skipped.
 *
 * @module
 */

import { NULL_ID, type RepTrace, TraceBuilder } from "./rep_format.ts";

/** The trace of one process of a valgrind log. */
export interface ValgrindConversion {
  /** The process id from the `--PID--` prefix. */
  readonly pid: number;
  /** The process's allocation trace. */
  readonly trace: RepTrace;
  /** Calls that could not be paired and were skipped, by kind. */
  readonly anomalies: ValgrindAnomalies;
}

/** Counts of log entries skipped because they could not be paired. */
export interface ValgrindAnomalies {
  /** `free` (or realloc) of a pointer that was never seen allocated: skipped (realloc: as malloc). */
  unknownPointers: number;
  /** An allocation returning an address already live (its free was missed): the old id is freed first. */
  reusedLiveAddresses: number;
  /** A call whose result never came, or a result with no call. */
  unpaired: number;
  /** Allocations that returned NULL: skipped. */
  failed: number;
}

type Pending =
  | { kind: "alloc"; sizeBytes: number }
  | { kind: "realloc"; address: number; sizeBytes: number }
  | { kind: "discard" };

const PREFIX = /^--(\d+)-- ?(.*)$/;
const TOKEN = /([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)|=\s*(0x[0-9A-Fa-f]+|0|\(nil\))/g;
const FREE_NAMES = new Set(["free", "cfree", "__builtin_delete", "__builtin_vec_delete"]);
const ALLOC_NAMES = new Set(["malloc", "calloc", "memalign", "__builtin_new", "__builtin_vec_new"]);

/**
 * Converts a `--trace-malloc=yes` log into one trace per process.
 *
 * @param logText The log's text (any valgrind tool that replaces malloc, any verbosity).
 * @returns One conversion per process that made at least one call, in order of first appearance.
 *
 * @example A malloc, a realloc of NULL and two frees
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatRep } from "./rep_format.ts";
 * import { convertValgrindLog } from "./valgrind_log.ts";
 *
 * const log = [
 *   "==7== Memcheck, a memory error detector",
 *   "--7-- malloc(16) = 0x4A00040",
 *   "--7-- realloc(0x0,32)malloc(32) = 0x4A00090",
 *   "--7-- free(0x4A00040)",
 *   "--7-- free(0x0)",
 * ].join("\n");
 * const [process] = convertValgrindLog(log);
 * assert.equal(process.pid, 7);
 * assert.equal(formatRep(process.trace), "48\n2\n4\n1\na 0 16\na 1 32\nf 0\nf -1\n");
 * ```
 */
export function convertValgrindLog(logText: string): ValgrindConversion[] {
  const streams = new Map<number, StreamState>();
  for (const line of logText.split("\n")) {
    const match = PREFIX.exec(line);
    if (match === null) continue;
    const pid = Number(match[1]);
    let stream = streams.get(pid);
    if (stream === undefined) {
      stream = new StreamState();
      streams.set(pid, stream);
    }
    stream.feed(match[2]);
  }
  const conversions: ValgrindConversion[] = [];
  for (const [pid, stream] of streams) {
    if (stream.builder.opCount === 0) continue;
    stream.finish();
    conversions.push({ pid, trace: stream.builder.build(), anomalies: stream.anomalies });
  }
  return conversions;
}

class StreamState {
  readonly builder = new TraceBuilder();
  readonly anomalies: ValgrindAnomalies = {
    unknownPointers: 0,
    reusedLiveAddresses: 0,
    unpaired: 0,
    failed: 0,
  };
  /** Live address -> id. */
  readonly #ids = new Map<number, number>();
  #pending: Pending | null = null;

  feed(text: string): void {
    TOKEN.lastIndex = 0;
    for (let match = TOKEN.exec(text); match !== null; match = TOKEN.exec(text)) {
      if (match[3] !== undefined) this.#result(parseAddress(match[3]));
      else this.#call(match[1], match[2]);
    }
  }

  finish(): void {
    if (this.#pending !== null && this.#pending.kind !== "discard") this.anomalies.unpaired++;
    this.#pending = null;
  }

  #call(name: string, args: string): void {
    if (FREE_NAMES.has(name) || name.startsWith("_ZdlPv") || name.startsWith("_ZdaPv")) {
      this.#free(parseAddress(args.split(",")[0].trim()));
      return;
    }
    const pending = this.#pending;
    if (name === "realloc") {
      this.#replacePending();
      const [address, size] = args.split(",");
      this.#pending = {
        kind: "realloc",
        address: parseAddress(address.trim()),
        sizeBytes: Number(size),
      };
      return;
    }
    if (!ALLOC_NAMES.has(name) && !name.startsWith("_Znwm") && !name.startsWith("_Znam")) return;
    // realloc(0x0,n) prints the nested malloc(n) call and then the result.
    const nested = pending !== null && pending.kind === "realloc" && pending.address === 0;
    if (!nested) this.#replacePending();
    this.#pending = { kind: "alloc", sizeBytes: allocSize(name, args) };
  }

  #free(address: number): void {
    const pending = this.#pending;
    if (pending !== null && pending.kind === "realloc" && pending.address === address) {
      // realloc(p,0) prints free(p) and then " = 0".
      this.#pending = { kind: "discard" };
    } else {
      this.#replacePending();
    }
    if (address === 0) {
      this.builder.free(NULL_ID);
      return;
    }
    const id = this.#ids.get(address);
    if (id === undefined) {
      this.anomalies.unknownPointers++;
      return;
    }
    this.#ids.delete(address);
    this.builder.free(id);
  }

  #result(address: number): void {
    const pending = this.#pending;
    this.#pending = null;
    if (pending === null) {
      this.anomalies.unpaired++;
      return;
    }
    if (pending.kind === "discard") return;
    if (address === 0) {
      this.anomalies.failed++;
      return;
    }
    if (pending.kind === "alloc") {
      this.#retire(address);
      this.#ids.set(address, this.builder.alloc(pending.sizeBytes));
      return;
    }
    const id = this.#ids.get(pending.address);
    if (id === undefined) {
      this.anomalies.unknownPointers++;
      this.#retire(address);
      this.#ids.set(address, this.builder.alloc(pending.sizeBytes));
      return;
    }
    this.#ids.delete(pending.address);
    this.#retire(address);
    this.builder.realloc(id, pending.sizeBytes);
    this.#ids.set(address, id);
  }

  /** Frees the id still holding `address`: its free was not in the log. */
  #retire(address: number): void {
    const id = this.#ids.get(address);
    if (id === undefined) return;
    this.anomalies.reusedLiveAddresses++;
    this.#ids.delete(address);
    this.builder.free(id);
  }

  #replacePending(): void {
    if (this.#pending !== null && this.#pending.kind !== "discard") this.anomalies.unpaired++;
    this.#pending = null;
  }
}

function parseAddress(text: string): number {
  if (text === "0" || text === "(nil)") return 0;
  return parseInt(text, 16);
}

/** The payload size of an allocation call from its printed arguments. */
function allocSize(name: string, args: string): number {
  if (name === "calloc") {
    const [count, size] = args.split(",");
    return Number(count) * Number(size);
  }
  // memalign(al A, size S) and aligned new's (size S, al A).
  const sized = /size\s+(\d+)/.exec(args);
  if (sized !== null) return Number(sized[1]);
  return Number(args.split(",")[0]);
}
