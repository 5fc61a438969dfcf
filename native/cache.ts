/**
 * Where `deno run -A jsr:@phys/allocator/build-native` puts `libpma`, and
 * where the loader looks for it: a per-user cache folder keyed by the ABI
 * version, so a package update that changes the ABI builds afresh instead of
 * loading a stale library.
 *
 * The root is `PMA_CACHE_DIR` when it is set (tests point it at a temporary
 * folder), else the platform's cache folder plus `phys-allocator`:
 * `$XDG_CACHE_HOME` or `~/.cache` on Linux and other Unixes,
 * `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows.
 *
 * @module
 */

import { PMA_ABI_VERSION } from "./symbols.ts";

/**
 * The environment variable that overrides the cache root.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CACHE_DIR_ENV } from "./cache.ts";
 *
 * assert.equal(CACHE_DIR_ENV, "PMA_CACHE_DIR");
 * ```
 */
export const CACHE_DIR_ENV = "PMA_CACHE_DIR";

/** The command that builds the library into the cache, for every message that needs it. */
export const BUILD_NATIVE_COMMAND = "deno run -A jsr:@phys/allocator/build-native";

/** The cache root, or why it could not be found. */
export type CacheRoot = { readonly root: string } | { readonly reason: string };

/** Reads one variable if the permission is granted; never prompts. */
type EnvReader = (name: string) => string | undefined | null;

/** `null` when reading is not allowed, `undefined` when unset or empty. */
function readEnv(name: string): string | undefined | null {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return null;
  const value = Deno.env.get(name);
  return value === "" ? undefined : value;
}

/**
 * The per-user cache root of this package's native builds.
 *
 * @param os The operating system, default the current one.
 * @param env Reads a variable: its value, `undefined` if unset, `null` if not
 *   readable (default: `Deno.env`, only where `--allow-env` grants it).
 * @returns `{ root }`, or `{ reason }` naming what is missing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nativeCacheRoot } from "./cache.ts";
 *
 * const env = (name: string) => ({ HOME: "/home/ada" } as Record<string, string>)[name];
 * assert.deepEqual(nativeCacheRoot("linux", env), { root: "/home/ada/.cache/phys-allocator" });
 * assert.deepEqual(nativeCacheRoot("darwin", env), {
 *   root: "/home/ada/Library/Caches/phys-allocator",
 * });
 * ```
 */
export function nativeCacheRoot(
  os: typeof Deno.build.os = Deno.build.os,
  env: EnvReader = readEnv,
): CacheRoot {
  const names = [CACHE_DIR_ENV];
  const override = env(CACHE_DIR_ENV);
  if (typeof override === "string") return { root: override };
  const join = (base: string, ...parts: string[]) =>
    [base.replace(/[\\/]+$/, ""), ...parts].join(os === "windows" ? "\\" : "/");
  let base: string | undefined;
  let denied = override === null;
  if (os === "windows") {
    names.push("LOCALAPPDATA");
    const local = env("LOCALAPPDATA");
    denied ||= local === null;
    if (typeof local === "string") base = local;
  } else if (os === "darwin") {
    names.push("HOME");
    const home = env("HOME");
    denied ||= home === null;
    if (typeof home === "string") base = join(home, "Library", "Caches");
  } else {
    names.push("XDG_CACHE_HOME", "HOME");
    const xdg = env("XDG_CACHE_HOME");
    const home = env("HOME");
    denied ||= xdg === null || home === null;
    if (typeof xdg === "string") base = xdg;
    else if (typeof home === "string") base = join(home, ".cache");
  }
  if (base !== undefined && !denied) return { root: join(base, "phys-allocator") };
  if (denied) return { reason: `not searched: reading ${names.join(", ")} needs --allow-env` };
  return { reason: `not searched: none of ${names.join(", ")} is set` };
}

/**
 * The library's path for this ABI version under a cache root.
 *
 * @param root The cache root ({@linkcode nativeCacheRoot}).
 * @param fileName The library's file name (`libpma.so`, `libpma.dylib`, `pma.dll`).
 * @returns `<root>/abi-<PMA_ABI_VERSION>/<fileName>`, with the root's separator.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nativeCacheLibraryPath } from "./cache.ts";
 * import { PMA_ABI_VERSION } from "./symbols.ts";
 *
 * assert.equal(nativeCacheLibraryPath("/c/", "libpma.so"), `/c/abi-${PMA_ABI_VERSION}/libpma.so`);
 * ```
 */
export function nativeCacheLibraryPath(root: string, fileName: string): string {
  const separator = root.includes("\\") && !root.includes("/") ? "\\" : "/";
  return [root.replace(/[\\/]+$/, ""), `abi-${PMA_ABI_VERSION}`, fileName].join(separator);
}
