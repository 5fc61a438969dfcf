/**
 * The few libc functions identity mapping and the host-map reader need,
 * loaded with `Deno.dlopen` (this needs `--allow-ffi`, which is as powerful
 * as `--allow-all`: native code is not sandboxed).
 *
 * Private to the package: `identity_memory.ts` and `memory_map_host.ts` use it.
 *
 * @module
 */

/** The libc symbols used, with their C prototypes. */
export const LIBC_SYMBOLS = {
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  // int munmap(void *addr, size_t length);
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int *__errno_location(void);  (glibc and musl)
  __errno_location: { parameters: [], result: "pointer" },
  // int getpagesize(void);
  getpagesize: { parameters: [], result: "i32" },
  // FILE *fopen(const char *path, const char *mode);
  fopen: { parameters: ["buffer", "buffer"], result: "pointer" },
  // size_t fread(void *ptr, size_t size, size_t nmemb, FILE *stream);
  fread: { parameters: ["buffer", "usize", "usize", "pointer"], result: "usize" },
  // int fclose(FILE *stream);
  fclose: { parameters: ["pointer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** An opened libc. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>;

/** The default library name: glibc's soname, found through the dynamic loader's search path. */
export const DEFAULT_LIBC_PATH = "libc.so.6";

/** `mmap` protection: readable. */
export const PROT_READ = 0x1;
/** `mmap` protection: writable. */
export const PROT_WRITE = 0x2;
/** `mmap` flag: private copy-on-write mapping. */
export const MAP_PRIVATE = 0x02;
/** `mmap` flag: not backed by a file; pages read as zero. */
export const MAP_ANONYMOUS = 0x20;
/** `mmap` flag: do not reserve swap; only touched pages cost memory. */
export const MAP_NORESERVE = 0x4000;
/** `mmap` flag: map exactly at `addr`, replacing what this process mapped there. */
export const MAP_FIXED = 0x10;
/** `mmap` flag (Linux 4.17+): map exactly at `addr` or fail with EEXIST, never replace. */
export const MAP_FIXED_NOREPLACE = 0x100000;

/** errno: the range is already mapped. */
export const EEXIST = 17;

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "EPERM"],
  [9, "EBADF"],
  [12, "ENOMEM"],
  [13, "EACCES"],
  [17, "EEXIST"],
  [22, "EINVAL"],
]);

/** Names an errno value for messages: `EEXIST (17)`. */
export function errnoName(errno: number): string {
  return `${ERRNO_NAMES.get(errno) ?? "errno"} (${errno})`;
}

/** The value `mmap` returns on failure, `(void *)-1`. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/**
 * Opens libc. Throws whatever `Deno.dlopen` throws (a missing library, or
 * `NotCapable` without `--allow-ffi`); callers wrap it in their own error.
 */
export function openLibc(path: string = DEFAULT_LIBC_PATH): Libc {
  return Deno.dlopen(path, LIBC_SYMBOLS);
}

/** The calling thread's errno; read it right after the failing call. */
export function lastErrno(libc: Libc): number {
  const location = libc.symbols.__errno_location();
  if (location === null) return 0;
  return new Deno.UnsafePointerView(location).getInt32();
}

/** A pointer's address as a bigint (0 for null). */
export function pointerValue(pointer: Deno.PointerValue): bigint {
  return pointer === null ? 0n : BigInt(Deno.UnsafePointer.value(pointer));
}

const READ_CHUNK_BYTES = 4096;
/** Kernel text files read this way are small; refuse anything past 1 MiB. */
const READ_LIMIT_BYTES = 1024 * 1024;

/**
 * Reads a text file with libc's `fopen`/`fread`. Deno 2 refuses to read
 * `/proc` and `/sys` without `--allow-all`; a process holding `--allow-ffi`
 * can read them anyway, so this only makes that explicit.
 *
 * @returns The file's text, or `undefined` when `fopen` fails (no such file).
 */
export function readTextFileViaLibc(libc: Libc, path: string): string | undefined {
  const encoder = new TextEncoder();
  const file = libc.symbols.fopen(encoder.encode(`${path}\0`), encoder.encode("re\0"));
  if (file === null) return undefined;
  try {
    const chunks: Uint8Array[] = [];
    let totalBytes = 0;
    while (totalBytes < READ_LIMIT_BYTES) {
      const chunk = new Uint8Array(READ_CHUNK_BYTES);
      const readBytes = Number(libc.symbols.fread(chunk, 1n, BigInt(READ_CHUNK_BYTES), file));
      if (readBytes === 0) break;
      chunks.push(chunk.subarray(0, readBytes));
      totalBytes += readBytes;
    }
    const all = new Uint8Array(totalBytes);
    let offset = 0;
    for (const chunk of chunks) {
      all.set(chunk, offset);
      offset += chunk.byteLength;
    }
    return new TextDecoder().decode(all);
  } finally {
    libc.symbols.fclose(file);
  }
}
