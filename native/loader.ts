/**
 * Finds, loads and checks `libpma`, the optional native hot path.
 *
 * Lookup order, fixed and documented:
 * 1. the path in the environment variable `PMA_NATIVE_LIB`, when it is set;
 * 2. `zig-out/lib/libpma.so` (`.dylib`, `pma.dll`) of the package this module
 *    belongs to, when the module is a local file (`bash tools/zig.sh build
 *    -Doptimize=ReleaseFast` puts it there);
 * 3. the per-user cache (see `cache.ts`), where
 *    `deno run -A jsr:@phys/allocator/build-native` puts it for a package
 *    imported from the registry or over http.
 *
 * The first candidate that opens and passes the handshake (`pma_abi_version`
 * equals {@linkcode PMA_ABI_VERSION}) wins; a stale library is refused, not
 * misread. Loaded libraries are cached per path and stay open for the life of
 * the process.
 *
 * @module
 */

import { InvalidOptionError, NativeUnavailableError } from "../allocator/errors.ts";
import { BUILD_NATIVE_COMMAND, nativeCacheLibraryPath, nativeCacheRoot } from "./cache.ts";
import { NATIVE_SYMBOLS, type NativeSymbols, PMA_ABI_VERSION } from "./symbols.ts";

/**
 * The environment variable naming the library to load first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NATIVE_LIB_ENV } from "./loader.ts";
 *
 * assert.equal(NATIVE_LIB_ENV, "PMA_NATIVE_LIB");
 * ```
 */
export const NATIVE_LIB_ENV = "PMA_NATIVE_LIB";

/** A place the loader looks for the library. */
export interface NativeCandidate {
  /** Where the path came from, for messages: the env variable or the local build. */
  readonly source: string;
  /** The library file, as a path or a `file:` URL. */
  readonly path: string | URL;
}

/** Why one candidate could not be used. */
interface Failure {
  readonly reason: string;
  readonly error?: unknown;
}

/** A candidate that could not be used, and why. */
interface Attempt extends Failure {
  readonly candidate: NativeCandidate;
}

const loaded = new Map<string, NativeSymbols>();
const FFI_DENIED = "FFI permission not granted (run with --allow-ffi)";

/**
 * The file name of the library on an operating system.
 *
 * @param os The operating system, default the current one.
 * @returns `libpma.so`, `libpma.dylib` or `pma.dll`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nativeLibraryFileName } from "./loader.ts";
 *
 * assert.equal(nativeLibraryFileName("linux"), "libpma.so");
 * assert.equal(nativeLibraryFileName("windows"), "pma.dll");
 * ```
 */
export function nativeLibraryFileName(os: typeof Deno.build.os = Deno.build.os): string {
  if (os === "windows") return "pma.dll";
  if (os === "darwin") return "libpma.dylib";
  return "libpma.so";
}

/**
 * The candidates of the lookup order, first to last. Reading the environment
 * variables needs `--allow-env` (`PMA_NATIVE_LIB`, and for the cache
 * `PMA_CACHE_DIR` and `XDG_CACHE_HOME`/`HOME` or `LOCALAPPDATA`); without that
 * permission they are skipped, never prompted for.
 *
 * @returns The env variable's path (if set and readable), the local build (if
 *   this module is a file), then the per-user cache (if its folder is known).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nativeLibraryCandidates } from "./loader.ts";
 *
 * const sources = nativeLibraryCandidates().map((candidate) => candidate.source);
 * assert.ok(sources.includes("local build"));
 * ```
 */
export function nativeLibraryCandidates(): NativeCandidate[] {
  return searchPlan().candidates;
}

/** The candidates, and notes on what could not be searched (for the error message). */
function searchPlan(): { candidates: NativeCandidate[]; notes: string[] } {
  const candidates: NativeCandidate[] = [];
  const notes: string[] = [];
  const env = Deno.permissions.querySync({ name: "env", variable: NATIVE_LIB_ENV });
  const envPath = env.state === "granted" ? Deno.env.get(NATIVE_LIB_ENV) : undefined;
  if (envPath !== undefined && envPath !== "") {
    candidates.push({ source: `env ${NATIVE_LIB_ENV}`, path: envPath });
  } else if (env.state !== "granted") {
    notes.push(`${NATIVE_LIB_ENV} not read: run with --allow-env to use it`);
  }
  const local = new URL(`../zig-out/lib/${nativeLibraryFileName()}`, import.meta.url);
  if (local.protocol === "file:") candidates.push({ source: "local build", path: local });
  const cache = nativeCacheRoot();
  if ("root" in cache) {
    const path = nativeCacheLibraryPath(cache.root, nativeLibraryFileName());
    candidates.push({ source: "user cache", path });
  } else {
    notes.push(`user cache ${cache.reason}`);
  }
  return { candidates, notes };
}

/**
 * Loads the native library according to `mode`.
 *
 * @param mode `"auto"`: the library if it loads, else null, never throwing
 *   (a missing `--allow-ffi` permission counts as absent); `true`: the library
 *   or an error; `false`: null without looking.
 * @param candidates Where to look, in order; default {@linkcode nativeLibraryCandidates}.
 * @returns The library's symbols, or null when it is not used.
 * @throws {InvalidOptionError} If `mode` is not "auto", true or false.
 * @throws {NativeUnavailableError} If `mode` is true and no candidate loads; the
 *   message names every path tried and why it failed, the first failure is the `cause`.
 *
 * @example The pure-TS path never loads anything
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadNative } from "./loader.ts";
 *
 * assert.equal(loadNative(false), null);
 * ```
 *
 * @example A required library that is missing is an error
 * ```ts
 * import assert from "node:assert/strict";
 * import { NativeUnavailableError } from "../allocator/errors.ts";
 * import { loadNative } from "./loader.ts";
 *
 * const missing = [{ source: "test", path: "/nonexistent/libpma.so" }];
 * assert.equal(loadNative("auto", missing), null);
 * assert.throws(() => loadNative(true, missing), NativeUnavailableError);
 * ```
 */
export function loadNative(
  mode: "auto" | boolean,
  candidates?: readonly NativeCandidate[],
): NativeSymbols | null {
  if (mode === false) return null;
  if (mode !== "auto" && mode !== true) {
    throw new InvalidOptionError(
      `Cannot load the native library: mode must be "auto" or a boolean, got ${String(mode)}`,
    );
  }
  const plan = candidates === undefined ? searchPlan() : { candidates, notes: [] };
  const attempts: Attempt[] = [];
  for (const candidate of plan.candidates) {
    const result = tryLoad(candidate);
    if (!isFailure(result)) return result;
    attempts.push({ candidate, ...result });
  }
  if (mode === "auto") return null;
  throw unavailable(attempts, plan.notes);
}

/**
 * The host address of byte 0 of `buffer`, as an exact number: the
 * `window_address` argument of the native finds. Needs `--allow-ffi`.
 *
 * @param buffer The memory window (not empty).
 * @returns The host pointer as a number.
 * @throws {NativeUnavailableError} If the buffer has no host pointer (it is empty or detached).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bufferAddress } from "./loader.ts";
 *
 * const buffer = new ArrayBuffer(64);
 * assert.ok(bufferAddress(buffer) > 0);
 * assert.equal(bufferAddress(buffer), bufferAddress(buffer));
 * ```
 */
export function bufferAddress(buffer: ArrayBuffer): number {
  const pointer = buffer.detached ? null : Deno.UnsafePointer.of(buffer);
  const address = pointer === null ? 0 : Number(Deno.UnsafePointer.value(pointer));
  if (!Number.isSafeInteger(address) || address === 0) {
    throw new NativeUnavailableError(
      `Cannot pass memory to the native library: the buffer of ${buffer.byteLength} bytes has no host pointer`,
    );
  }
  return address;
}

/**
 * The host address of byte 0 of `view` (its buffer's host pointer plus its
 * byte offset), as an exact number: the `window_address` and `control_host`
 * arguments of the native finds. Needs `--allow-ffi` (not path-scoped).
 *
 * @param view A view over a non-empty, attached buffer.
 * @returns The host pointer of the view's byte 0.
 * @throws {NativeUnavailableError} If the buffer has no host pointer (it is empty or detached).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { bufferAddress, viewAddress } from "./loader.ts";
 *
 * const buffer = new ArrayBuffer(64);
 * assert.equal(viewAddress(new Uint8Array(buffer, 16)), bufferAddress(buffer) + 16);
 * ```
 */
export function viewAddress(view: ArrayBufferView): number {
  return bufferAddress(view.buffer as ArrayBuffer) + view.byteOffset;
}

/**
 * What the negative results of the native finds mean (`native/root.zig`):
 * `WALK_TOO_LONG` a first-fit walk ran past its step bound, `INVALID_ARGUMENT`
 * a number out of range or a foreign control block, and `CORRUPT_BASE - B`
 * (at most `CORRUPT_BASE`) a damaged heap at block B (0: the control block).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { NATIVE_RESULT } from "./loader.ts";
 *
 * assert.equal(NATIVE_RESULT.CORRUPT_BASE - -0x1048, 0x1040);
 * ```
 */
export const NATIVE_RESULT = {
  WALK_TOO_LONG: -1,
  INVALID_ARGUMENT: -2,
  CORRUPT_BASE: -8,
} as const;

function isFailure(result: NativeSymbols | Failure): result is Failure {
  return "reason" in result;
}

function tryLoad(candidate: NativeCandidate): NativeSymbols | Failure {
  const key = String(candidate.path);
  const cached = loaded.get(key);
  if (cached !== undefined) return cached;
  const ffi = Deno.permissions.querySync({ name: "ffi", path: candidate.path });
  if (ffi.state !== "granted") {
    return { reason: FFI_DENIED };
  }
  const problem = fileProblem(candidate.path);
  if (problem !== null) return { reason: problem };
  let library: Deno.DynamicLibrary<typeof NATIVE_SYMBOLS>;
  try {
    library = Deno.dlopen(candidate.path, NATIVE_SYMBOLS);
  } catch (error) {
    return { reason: errorText(error), error };
  }
  const version = library.symbols.pma_abi_version();
  if (version !== PMA_ABI_VERSION) {
    library.close();
    return { reason: `ABI version ${version}, expected ${PMA_ABI_VERSION} (rebuild the library)` };
  }
  loaded.set(key, library.symbols);
  return library.symbols;
}

/**
 * Why the file at `path` cannot be a library to load, or null when it may be
 * (or cannot be looked at without a read permission: dlopen decides then).
 * dlopen of a FIFO blocks forever, and of an ELF file cut short (a copy that
 * was interrupted) kills the process with SIGBUS when a page past its end is
 * touched: both are refused here. An ELF file's section headers end it.
 */
function fileProblem(path: string | URL): string | null {
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return null;
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    return null; // missing: dlopen says so, with its own error as the cause
  }
  if (!info.isFile) return "not a regular file";
  const header = new Uint8Array(64);
  try {
    using file = Deno.openSync(path);
    // Shorter than an ELF header: dlopen refuses it cleanly.
    if (file.readSync(header) !== header.length) return null;
  } catch {
    return null;
  }
  const elf64LittleEndian = header[0] === 0x7f && header[1] === 0x45 && header[2] === 0x4c &&
    header[3] === 0x46 && header[4] === 2 && header[5] === 1;
  if (!elf64LittleEndian) return null;
  const view = new DataView(header.buffer);
  const sectionHeadersEnd = Number(view.getBigUint64(0x28, true)) +
    view.getUint16(0x3a, true) * view.getUint16(0x3c, true);
  return sectionHeadersEnd > info.size
    ? `${info.size} bytes, cut short (its ELF header says ${sectionHeadersEnd}): rebuild or copy it again`
    : null;
}

function unavailable(
  attempts: readonly Attempt[],
  notes: readonly string[],
): NativeUnavailableError {
  const cause = attempts.find((attempt) => attempt.error !== undefined)?.error;
  const tried = attempts.map((attempt) =>
    `${displayPath(attempt.candidate.path)} (${attempt.candidate.source}): ${attempt.reason}`
  );
  const found = tried.length === 0 && notes.length === 0 ? ["no path to try"] : [];
  const build =
    `build it with \`${BUILD_NATIVE_COMMAND}\` (in a clone of the repository: \`bash tools/zig.sh build -Doptimize=ReleaseFast\`)`;
  const fix = attempts.some((attempt) => attempt.reason === FFI_DENIED)
    ? `run with --allow-ffi, and if the library is not built yet, ${build}`
    : build;
  return new NativeUnavailableError(
    `Cannot load the native library: ${[...found, ...tried, ...notes].join("; ")}; ${fix}`,
    cause === undefined ? undefined : { cause },
  );
}

function displayPath(path: string | URL): string {
  if (typeof path === "string") return path;
  return decodeURIComponent(path.pathname);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
