/**
 * The Rust peers of the scoreboard, rlsf and talc: built on demand from
 * `tools/trace/peers/` (a `cdylib` of the project's own, see its `lib.rs`)
 * with cargo when it is on `PATH`, and skipped with a one-line note when it
 * is not. Cargo builds incrementally, so a second scoreboard run only checks
 * that the library is current.
 *
 * @module
 */

import { nativeLibraryFileName } from "../../native/loader.ts";
import type { ReplayTarget } from "./replay_heap.ts";
import { rustPeerTarget } from "./target_ffi.ts";

/** The names of the Rust peers, as `--peers` takes them. */
export const RUST_PEERS = ["rlsf", "talc"] as const;

/**
 * Header bytes per live block: rlsf's used-block header is the size word and
 * the previous physical block's pointer; talc keeps one tag word per chunk.
 */
const HEADER_BYTES = { rlsf: 16, talc: 8 } as const;

const CRATE = new URL("./peers/", import.meta.url);

/**
 * Builds the peers' library with cargo (release profile).
 *
 * @param log Where the one-line note goes when the peers are skipped.
 * @returns The library's path, or null when cargo is absent or the build failed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { buildRustPeers } from "./rust_peers.ts";
 *
 * const notes: string[] = [];
 * const path = buildRustPeers((line) => notes.push(line));
 * assert.ok(path === null ? notes.length === 1 : path.endsWith("pma_peers.so"));
 * ```
 */
export function buildRustPeers(log: (line: string) => void = console.error): string | null {
  const manifest = decodeURIComponent(new URL("Cargo.toml", CRATE).pathname);
  let output: Deno.CommandOutput;
  try {
    output = new Deno.Command("cargo", {
      args: ["build", "--release", "--quiet", "--manifest-path", manifest],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
  } catch (error) {
    log(`rlsf and talc skipped: cannot run cargo (${(error as Error).message})`);
    return null;
  }
  if (!output.success) {
    const last = new TextDecoder().decode(output.stderr).trim().split("\n").at(-1);
    log(`rlsf and talc skipped: cargo build failed: ${last}`);
    return null;
  }
  const fileName = nativeLibraryFileName().replace("pma", "pma_peers");
  return decodeURIComponent(new URL(`target/release/${fileName}`, CRATE).pathname);
}

/**
 * The replay target of one Rust peer.
 *
 * @param name `rlsf` or `talc`.
 * @param libraryPath The library {@linkcode buildRustPeers} built.
 * @returns The target.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rustTarget } from "./rust_peers.ts";
 *
 * assert.equal(rustTarget("rlsf", "/nonexistent.so").headerBytesPerBlock, 16);
 * ```
 */
export function rustTarget(name: (typeof RUST_PEERS)[number], libraryPath: string): ReplayTarget {
  return rustPeerTarget(name, libraryPath, HEADER_BYTES[name]);
}
