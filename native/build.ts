/**
 * Builds `libpma`, the native hot path, from the sources this package ships,
 * into the per-user cache where the loader finds it:
 *
 * ```sh
 * deno run -A jsr:@phys/allocator/build-native
 * ```
 *
 * It fetches `build.zig`, `build.zig.zon` and `native/root.zig` with every
 * Zig file they `@import`, from wherever this module was loaded (the
 * registry, an http server or a local folder), into a temporary folder and
 * runs `zig build -Doptimize=ReleaseFast` there. Zig is the one on `PATH`
 * when its version is the pinned one (`minimum_zig_version` in
 * `build.zig.zon`), else PyPI's `ziglang` wheel of that version, installed
 * once into the cache with `python3 -m pip install --target`. The library is
 * then checked (it must load and pass the ABI handshake) and moved into place
 * with one rename, so a loader never sees half a file.
 *
 * Options: `--help`; `--quiet` (print only the library's path).
 * Environment: `PMA_CACHE_DIR` replaces the cache root (see `cache.ts`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { NativeUnavailableError } from "../allocator/errors.ts";
import {
  BUILD_NATIVE_COMMAND,
  CACHE_DIR_ENV,
  nativeCacheLibraryPath,
  nativeCacheRoot,
} from "./cache.ts";
import { loadNative, nativeLibraryFileName } from "./loader.ts";

/** At most this many Zig files are fetched (the package ships about ten). */
const SOURCE_FILES_MAX = 64;

const USAGE = `usage: ${BUILD_NATIVE_COMMAND} [--quiet] [--help]

Builds libpma (the native hot path of @phys/allocator) from the package's own
Zig sources into the per-user cache, where the package's loader finds it.

  --quiet   print only the path of the built library
  --help    print this help and exit

Needs the pinned Zig (build.zig.zon's minimum_zig_version) on PATH, or python3
with pip: the ziglang wheel of that version is then installed into the cache.
${CACHE_DIR_ENV}=DIR puts the cache in DIR instead of the per-user cache folder.`;

/** What {@linkcode buildNative} did. */
export interface BuildResult {
  /** The library's path in the cache. */
  readonly libraryPath: string;
  /** The Zig version used. */
  readonly zigVersion: string;
  /** How Zig was found: `PATH` or the ziglang wheel's folder. */
  readonly zigSource: string;
}

/** Options of {@linkcode buildNative}. */
export interface BuildOptions {
  /** Where the package's files are; default the package this module belongs to. */
  readonly packageRoot?: URL;
  /** Progress lines go here; default `console.error`. */
  readonly log?: (line: string) => void;
}

/**
 * Fetches the package's Zig sources, builds `libpma` with the pinned Zig and
 * installs it into the per-user cache.
 *
 * @param options Where the package is, and where progress goes.
 * @returns The library's path and the Zig that built it.
 * @throws {NativeUnavailableError} If the cache folder is unknown, a source
 *   cannot be fetched, no Zig of the pinned version can be found or installed,
 *   the build fails, or the built library does not pass the handshake.
 *
 * @example A package whose sources cannot be fetched is an error that names them
 * ```ts
 * import assert from "node:assert/strict";
 * import { NativeUnavailableError } from "@phys/allocator";
 * import { buildNative } from "@phys/allocator/build-native";
 *
 * await assert.rejects(
 *   buildNative({ packageRoot: new URL("file:///nonexistent/pma/"), log: () => {} }),
 *   (error) =>
 *     error instanceof NativeUnavailableError &&
 *     error.message.includes("file:///nonexistent/pma/build.zig"),
 * );
 * ```
 */
export async function buildNative(options: BuildOptions = {}): Promise<BuildResult> {
  const packageRoot = options.packageRoot ?? new URL("../", import.meta.url);
  const log = options.log ?? ((line: string) => console.error(line));
  const cache = nativeCacheRoot();
  if (!("root" in cache)) {
    throw new NativeUnavailableError(`Cannot build the native library: the cache ${cache.reason}`);
  }
  const work = await Deno.makeTempDir({ prefix: "pma-build-" });
  try {
    const files = await fetchSources(packageRoot, work);
    log(`fetched ${files.length} files from ${packageRoot.href}`);
    const zigVersion = pinnedZigVersion(await Deno.readTextFile(`${work}/build.zig.zon`));
    const zig = await findZig(zigVersion, cache.root, log);
    log(`building with Zig ${zigVersion} (${zig.source})`);
    await run(zig.command, ["build", "-Doptimize=ReleaseFast"], work, zig.env);
    const built = Deno.build.os === "windows"
      ? `${work}/zig-out/bin/${nativeLibraryFileName()}`
      : `${work}/zig-out/lib/${nativeLibraryFileName()}`;
    const libraryPath = nativeCacheLibraryPath(cache.root, nativeLibraryFileName());
    await install(built, libraryPath);
    return { libraryPath, zigVersion, zigSource: zig.source };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

/**
 * Fetches the build files and `native/root.zig` with everything it imports.
 * Imports are followed breadth-first, relative to the importing file, and
 * must stay inside the package.
 */
async function fetchSources(packageRoot: URL, work: string): Promise<string[]> {
  const queue = ["build.zig", "build.zig.zon", "native/root.zig"];
  const seen = new Set(queue);
  for (let i = 0; i < queue.length; i++) {
    if (i >= SOURCE_FILES_MAX) {
      throw new NativeUnavailableError(
        `Cannot build the native library: more than ${SOURCE_FILES_MAX} Zig files to fetch`,
      );
    }
    const path = queue[i];
    const url = new URL(path, packageRoot);
    const response = await fetch(url).catch((error) => {
      throw new NativeUnavailableError(
        `Cannot build the native library: fetching ${url.href} failed: ${error.message}`,
        { cause: error },
      );
    });
    if (!response.ok) {
      await response.body?.cancel();
      throw new NativeUnavailableError(
        `Cannot build the native library: fetching ${url.href} answered ${response.status}`,
      );
    }
    const text = await response.text();
    await Deno.mkdir(`${work}/${path.replace(/[^/]*$/, "")}`, { recursive: true });
    await Deno.writeTextFile(`${work}/${path}`, text);
    if (!path.startsWith("native/")) continue;
    for (const imported of zigImports(text)) {
      const href = new URL(imported, url).href;
      if (!href.startsWith(packageRoot.href)) {
        throw new NativeUnavailableError(
          `Cannot build the native library: ${path} imports a file outside the package: ${imported}`,
        );
      }
      const resolved = href.slice(packageRoot.href.length);
      if (!seen.has(resolved)) {
        seen.add(resolved);
        queue.push(resolved);
      }
    }
  }
  return queue;
}

/**
 * The relative `.zig` files a Zig source imports (not `std` or modules).
 *
 * @param source A Zig file's text.
 * @returns The imported paths, as written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { zigImports } from "@phys/allocator/build-native";
 *
 * const source = 'const std = @import("std");\nconst fit = @import("fit.zig");';
 * assert.deepEqual(zigImports(source), ["fit.zig"]);
 * ```
 */
export function zigImports(source: string): string[] {
  return [...source.matchAll(/@import\("([^"]+\.zig)"\)/g)].map((match) => match[1]);
}

/**
 * The Zig version a `build.zig.zon` pins (`.minimum_zig_version`).
 *
 * @param zon The text of `build.zig.zon`.
 * @returns The version, e.g. `0.15.2`.
 * @throws {NativeUnavailableError} If the file names no version.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pinnedZigVersion } from "@phys/allocator/build-native";
 *
 * assert.equal(pinnedZigVersion('.{ .minimum_zig_version = "0.15.2" }'), "0.15.2");
 * ```
 */
export function pinnedZigVersion(zon: string): string {
  const match = /\.minimum_zig_version\s*=\s*"([0-9][^"]*)"/.exec(zon);
  if (match === null) {
    throw new NativeUnavailableError(
      "Cannot build the native library: build.zig.zon names no minimum_zig_version",
    );
  }
  return match[1];
}

interface Zig {
  readonly command: string[];
  readonly env: Record<string, string>;
  readonly source: string;
}

/** Zig on PATH at `version`, else the ziglang wheel in the cache (installed if absent). */
async function findZig(version: string, cacheRoot: string, log: (line: string) => void) {
  const onPath: Zig = { command: ["zig"], env: {}, source: "PATH" };
  if (await versionOf(onPath) === version) return onPath;
  const target = `${cacheRoot}/zig-${version}`;
  const wheel: Zig = {
    command: ["python3", "-m", "ziglang"],
    env: { PYTHONPATH: target },
    source: `ziglang wheel in ${target}`,
  };
  if (await versionOf(wheel) === version) return wheel;
  log(`installing ziglang==${version} from PyPI into ${target}`);
  await Deno.remove(target, { recursive: true }).catch(() => {});
  await run(
    ["python3", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"],
    ["--target", target, `ziglang==${version}`],
    ".",
    { PIP_ROOT_USER_ACTION: "ignore" },
  );
  const installed = await versionOf(wheel);
  if (installed !== version) {
    throw new NativeUnavailableError(
      `Cannot build the native library: expected Zig ${version} after installing the ziglang wheel, found ${
        installed ?? "none"
      }`,
    );
  }
  return wheel;
}

/** The version a Zig command reports, or undefined when it does not run. */
async function versionOf(zig: Zig): Promise<string | undefined> {
  try {
    const output = await new Deno.Command(zig.command[0], {
      args: [...zig.command.slice(1), "version"],
      env: zig.env,
      stdout: "piped",
      stderr: "null",
    }).output();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a command with inherited output; a failure is an error naming it. */
async function run(command: string[], args: string[], cwd: string, env: Record<string, string>) {
  const all = [...command.slice(1), ...args];
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command(command[0], { args: all, cwd, env, stdout: "inherit" })
      .spawn().status;
  } catch (error) {
    throw new NativeUnavailableError(
      `Cannot build the native library: cannot run ${command[0]}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (!status.success) {
    throw new NativeUnavailableError(
      `Cannot build the native library: \`${
        [command[0], ...all].join(" ")
      }\` exited with ${status.code}`,
    );
  }
}

/** Checks the built library, then moves it into the cache with one rename. */
async function install(built: string, libraryPath: string): Promise<void> {
  const folder = libraryPath.replace(/[\\/][^\\/]*$/, "");
  await Deno.mkdir(folder, { recursive: true });
  const staged = `${libraryPath}.${Deno.pid}.tmp`;
  await Deno.copyFile(built, staged);
  try {
    loadNative(true, [{ source: "new build", path: staged }]);
    await Deno.rename(staged, libraryPath);
  } catch (error) {
    await Deno.remove(staged).catch(() => {});
    throw error;
  }
}

async function main(args: string[]): Promise<number> {
  let values: { help?: boolean; quiet?: boolean };
  try {
    values = parseArgs({
      args,
      options: { help: { type: "boolean", short: "h" }, quiet: { type: "boolean" } },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    const result = await buildNative({ log: values.quiet ? () => {} : undefined });
    if (values.quiet) console.log(result.libraryPath);
    else console.log(`built ${result.libraryPath} (Zig ${result.zigVersion}, ${result.zigSource})`);
    return 0;
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
