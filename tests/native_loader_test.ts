import assert from "#assert";
import { InvalidOptionError, NativeUnavailableError } from "../allocator/errors.ts";
import {
  loadNative,
  NATIVE_LIB_ENV,
  nativeLibraryCandidates,
  nativeLibraryFileName,
} from "../native/loader.ts";
import { nativeCacheLibraryPath, nativeCacheRoot } from "../native/cache.ts";
import { PMA_ABI_VERSION } from "../native/symbols.ts";
import { nativeOrSkip } from "./support/native_library.ts";

const native = nativeOrSkip("tests/native_loader_test.ts (loading a built library)");
const BOGUS_PATH = "/nonexistent/pma/libpma.so";
const bogus = [{ source: "test", path: BOGUS_PATH }];
const localBuild = new URL(`../zig-out/lib/${nativeLibraryFileName()}`, import.meta.url);

/** Runs `fn` with PMA_NATIVE_LIB set to `value` (or unset), restoring it afterwards. */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = Deno.env.get(NATIVE_LIB_ENV);
  if (value === undefined) Deno.env.delete(NATIVE_LIB_ENV);
  else Deno.env.set(NATIVE_LIB_ENV, value);
  try {
    return fn();
  } finally {
    if (saved === undefined) Deno.env.delete(NATIVE_LIB_ENV);
    else Deno.env.set(NATIVE_LIB_ENV, saved);
  }
}

Deno.test("loadNative(false) never loads, even with a bogus env path", () => {
  withEnv(BOGUS_PATH, () => assert.equal(loadNative(false), null));
  assert.equal(loadNative(false, bogus), null);
});

Deno.test('loadNative("auto") returns null without throwing when no candidate loads', () => {
  assert.equal(loadNative("auto", bogus), null);
  assert.equal(loadNative("auto", []), null);
});

Deno.test("loadNative(true) names every path tried and why, with the load error as cause", () => {
  const candidates = [...bogus, { source: "second", path: "/also/missing/libpma.so" }];
  assert.throws(
    () => loadNative(true, candidates),
    (error) => {
      assert.ok(error instanceof NativeUnavailableError);
      assert.equal(error.code, "NATIVE_UNAVAILABLE");
      assert.match(error.message, /^Cannot load the native library: /);
      assert.ok(error.message.includes(`${BOGUS_PATH} (test): `), error.message);
      assert.ok(error.message.includes("/also/missing/libpma.so (second): "), error.message);
      assert.ok(error.cause instanceof Error);
      return true;
    },
  );
});

Deno.test("loadNative(true) with no candidate at all says so and names the build command", () => {
  assert.throws(
    () => loadNative(true, []),
    /no path to try; build it with `deno run -A jsr:@phys\/allocator\/build-native`/,
  );
});

Deno.test("loadNative() rejects a mode that is not auto or a boolean", () => {
  assert.throws(() => loadNative("yes" as unknown as "auto"), InvalidOptionError);
});

Deno.test("loadNative() refuses a library that lacks the pma symbols", () => {
  const libc = Deno.build.os === "linux" ? "libc.so.6" : undefined;
  if (libc === undefined) return;
  const candidates = [{ source: "test", path: libc }];
  assert.equal(loadNative("auto", candidates), null);
  assert.throws(() => loadNative(true, candidates), /libc\.so\.6 \(test\): .*pma_/);
});

Deno.test("nativeLibraryCandidates() tries the env path, the local build, then the user cache", () => {
  const cache = nativeCacheRoot();
  assert.ok("root" in cache, JSON.stringify(cache));
  const cached = nativeCacheLibraryPath(cache.root, nativeLibraryFileName());
  withEnv(BOGUS_PATH, () => {
    const candidates = nativeLibraryCandidates();
    assert.deepEqual(candidates.map((candidate) => candidate.source), [
      `env ${NATIVE_LIB_ENV}`,
      "local build",
      "user cache",
    ]);
    assert.equal(candidates[0].path, BOGUS_PATH);
    assert.equal(String(candidates[1].path), String(localBuild));
    assert.equal(candidates[2].path, cached);
    assert.match(cached, new RegExp(`abi-${PMA_ABI_VERSION}/${nativeLibraryFileName()}$`));
  });
  withEnv(undefined, () => {
    assert.deepEqual(nativeLibraryCandidates().map((candidate) => candidate.source), [
      "local build",
      "user cache",
    ]);
  });
  withEnv("", () => assert.equal(nativeLibraryCandidates().length, 2));
});

Deno.test("nativeCacheRoot() follows PMA_CACHE_DIR, then the platform's cache folder", () => {
  const env = (values: Record<string, string | null>) => (name: string) => values[name];
  assert.deepEqual(nativeCacheRoot("linux", env({ PMA_CACHE_DIR: "/tmp/c", HOME: "/h" })), {
    root: "/tmp/c",
  });
  assert.deepEqual(nativeCacheRoot("linux", env({ XDG_CACHE_HOME: "/x/", HOME: "/h" })), {
    root: "/x/phys-allocator",
  });
  assert.deepEqual(nativeCacheRoot("linux", env({ HOME: "/h" })), {
    root: "/h/.cache/phys-allocator",
  });
  assert.deepEqual(
    nativeCacheRoot("windows", env({ LOCALAPPDATA: "C:\\Users\\a\\AppData\\Local" })),
    {
      root: "C:\\Users\\a\\AppData\\Local\\phys-allocator",
    },
  );
  assert.equal(
    nativeCacheLibraryPath("C:\\cache", "pma.dll"),
    `C:\\cache\\abi-${PMA_ABI_VERSION}\\pma.dll`,
  );
  assert.deepEqual(nativeCacheRoot("linux", env({})), {
    reason: "not searched: none of PMA_CACHE_DIR, XDG_CACHE_HOME, HOME is set",
  });
  assert.deepEqual(nativeCacheRoot("darwin", env({ PMA_CACHE_DIR: null, HOME: "/h" })), {
    reason: "not searched: reading PMA_CACHE_DIR, HOME needs --allow-env",
  });
});

Deno.test({
  name: "loadNative() passes the handshake and caches the library per path",
  ignore: native === null,
  fn() {
    assert.equal(native!.pma_abi_version(), PMA_ABI_VERSION);
    assert.equal(loadNative("auto"), native);
    assert.equal(loadNative(true), native);
  },
});

Deno.test({
  name: "loadNative() falls back to the local build past a bogus env path",
  ignore: native === null,
  fn() {
    const local = loadNative("auto", [{ source: "local build", path: localBuild }]);
    if (local === null) return; // Only the env path's library exists here.
    withEnv(BOGUS_PATH, () => {
      assert.equal(loadNative("auto"), local);
      assert.equal(loadNative(true), local);
    });
  },
});

Deno.test({
  name: "loadNative() loads the library the env path names",
  ignore: native === null,
  async fn() {
    const copy = await Deno.makeTempFile({ suffix: `-${nativeLibraryFileName()}` });
    try {
      await Deno.copyFile(Deno.env.get(NATIVE_LIB_ENV) || localBuild, copy);
      const fromEnv = withEnv(copy, () => loadNative(true));
      assert.notEqual(fromEnv, null);
      assert.notEqual(fromEnv, native);
      assert.equal(fromEnv!.pma_abi_version(), PMA_ABI_VERSION);
      assert.equal(loadNative(true, [{ source: "test", path: copy }]), fromEnv);
    } finally {
      await Deno.remove(copy);
    }
  },
});

Deno.test("loadNative() without --allow-ffi or --allow-env: auto is null, true throws", async () => {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    const loaderUrl = new URL("../native/loader.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { loadNative } from ${JSON.stringify(loaderUrl)};
console.log(JSON.stringify(loadNative("auto")));
try { loadNative(true); console.log("loaded"); } catch (e) { console.log(e.name + ": " + e.message); }
`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-config", script],
      env: { [NATIVE_LIB_ENV]: BOGUS_PATH, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    const [auto, required] = stdout.trim().split("\n");
    assert.equal(auto, "null");
    assert.match(required, /^NativeUnavailableError: Cannot load the native library: /);
    assert.match(required, /FFI permission not granted/);
    // Without --allow-env the env path is skipped, not prompted for or read, and the message says so.
    assert.ok(!required.includes(BOGUS_PATH), required);
    assert.ok(
      required.includes("PMA_NATIVE_LIB not read: run with --allow-env to use it"),
      required,
    );
    assert.ok(required.includes("user cache not searched: reading PMA_CACHE_DIR"), required);
    assert.ok(required.includes("run with --allow-ffi"), required);
    assert.ok(required.includes("`deno run -A jsr:@phys/allocator/build-native`"), required);
  } finally {
    await Deno.remove(script);
  }
});
