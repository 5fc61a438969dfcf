/**
 * The package as a registry user gets it: exactly the files `deno publish
 * --dry-run` lists, served over http from 127.0.0.1. The build entry point
 * runs over http into a temporary cache (`PMA_CACHE_DIR`), then a consumer
 * imports `mod.ts` over http and runs `native: true` with first-fit against
 * the TS path. Zig is the toolchain already installed (on PATH or in
 * `.zig/ziglang`), linked into the temporary cache so nothing is downloaded twice.
 */
import assert from "#assert";
import { CACHE_DIR_ENV } from "../native/cache.ts";
import { pinnedZigVersion } from "../native/build.ts";
import { NATIVE_LIB_ENV, nativeLibraryFileName } from "../native/loader.ts";
import { PMA_ABI_VERSION } from "../native/symbols.ts";
import { runDeno } from "./support/run_deno.ts";

const repoRoot = new URL("../", import.meta.url);
/** The server stops itself after this long even if a step hangs. */
const SERVE_LIMIT_MS = 300_000;

/** The files `deno publish --dry-run` would upload, as paths relative to the repo root. */
async function publishedFiles(): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: repoRoot,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  assert.ok(output.success, text);
  const files = [...text.matchAll(/^\s+(file:\/\/\S+) \(/gm)].map((match) =>
    decodeURIComponent(new URL(match[1]).pathname).slice(
      decodeURIComponent(repoRoot.pathname).length,
    )
  );
  assert.ok(files.length > 10, text);
  return files;
}

/** Serves `files` (and only them) from the repo; 404 for anything else. */
function serve(files: readonly string[], signal: AbortSignal) {
  const published = new Set(files);
  const requested: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal, onListen() {} },
    async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname).slice(1);
      requested.push(path);
      if (!published.has(path)) return new Response("not published", { status: 404 });
      const type = path.endsWith(".ts") ? "application/typescript" : "text/plain";
      return new Response(await Deno.readFile(new URL(path, repoRoot)), {
        headers: { "content-type": `${type}; charset=utf-8` },
      });
    },
  );
  return { server, requested };
}

/** Links the installed Zig wheel into the cache when `zig` on PATH is not the pinned one. */
async function shareZig(cacheDir: string): Promise<void> {
  const zon = await Deno.readTextFile(new URL("build.zig.zon", repoRoot));
  const version = pinnedZigVersion(zon);
  let onPath = "";
  try {
    const output = await new Deno.Command("zig", { args: ["version"], stdout: "piped" }).output();
    onPath = new TextDecoder().decode(output.stdout).trim();
  } catch {
    // No zig on PATH: use the wheel.
  }
  if (onPath === version) return;
  const wheel = decodeURIComponent(new URL(".zig/ziglang", repoRoot).pathname);
  await Deno.stat(wheel); // tools/zig.sh installed it for `zig build test` before the tests ran.
  await Deno.symlink(wheel, `${cacheDir}/zig-${version}`);
}

const CONSUMER = `
import { bufferMemory, PhysicalAllocator } from "BASE/mod.ts";
const ranges = [{ start: 0x10000, length: 256 * 1024 }];
let nat;
try {
  nat = new PhysicalAllocator(bufferMemory(ranges), { policy: "first-fit", native: true });
} catch (error) {
  console.log(JSON.stringify({ error: error.name + ": " + error.message }));
  Deno.exit(0);
}
const ts = new PhysicalAllocator(bufferMemory(ranges), { policy: "first-fit", native: false });
let seed = 14, mismatches = 0;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const live = [];
for (let step = 0; step < 3000; step++) {
  if (random() < 0.55 || live.length === 0) {
    const size = 1 + Math.floor(random() * 2000), align = 2 ** Math.floor(random() * 8);
    const a = ts.tryAlloc(size, align), b = nat.tryAlloc(size, align);
    if (a !== b) mismatches++;
    if (a !== 0) live.push(a);
  } else {
    const [address] = live.splice(Math.floor(random() * live.length), 1);
    ts.free(address);
    nat.free(address);
  }
}
ts.check();
nat.check();
const { nativeActive, ...natStats } = nat.stats();
const { nativeActive: tsNative, ...tsStats } = ts.stats();
console.log(JSON.stringify({
  policy: nat.policy, nativeActive, tsNative, mismatches,
  sameStats: JSON.stringify(natStats) === JSON.stringify(tsStats), live: live.length,
}));
`;

Deno.test("a registry user builds the native path over http and it matches the TS path", async () => {
  const files = await publishedFiles();
  for (const required of ["mod.ts", "native/build.ts", "build.zig", "build.zig.zon"]) {
    assert.ok(files.includes(required), `${required} is not published`);
  }
  const work = await Deno.makeTempDir({ prefix: "pma-consumer-" });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), SERVE_LIMIT_MS);
  const { server, requested } = serve(files, controller.signal);
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const cacheDir = `${work}/cache`;
    await Deno.mkdir(cacheDir);
    await shareZig(cacheDir);
    const env = { [CACHE_DIR_ENV]: cacheDir };
    const consumer = `${work}/consumer.ts`;
    await Deno.writeTextFile(consumer, CONSUMER.replace("BASE", base));
    const consumerArgs = ["run", "--no-config", "--no-lock", "--allow-import", "--allow-ffi"];
    // PMA_NATIVE_LIB empty: the loader must find the library in the cache alone.
    const runEnv = { env: { ...env, [NATIVE_LIB_ENV]: "" }, cwd: work };
    const consume = () => runDeno([...consumerArgs, "--allow-env", consumer], runEnv);

    // Before the build: native: true fails and names the fix.
    const before = JSON.parse((await consume()).stdout);
    assert.match(before.error, /^NativeUnavailableError: Cannot load the native library: /);
    assert.ok(before.error.includes("(user cache)"), before.error);
    assert.ok(before.error.includes("deno run -A jsr:@phys/allocator/build-native"), before.error);

    const build = await runDeno(["run", "-A", "--no-config", `${base}/native/build.ts`], runEnv);
    assert.equal(build.code, 0, build.stderr);
    const library = `${cacheDir}/abi-${PMA_ABI_VERSION}/${nativeLibraryFileName()}`;
    assert.ok(build.stdout.includes(`built ${library}`), build.stdout + build.stderr);
    assert.ok(requested.includes("native/root.zig"), requested.join(", "));

    const after = await consume();
    assert.equal(after.code, 0, after.stderr);
    assert.deepEqual(JSON.parse(after.stdout), {
      policy: "first-fit",
      nativeActive: true,
      tsNative: false,
      mismatches: 0,
      sameStats: true,
      live: JSON.parse(after.stdout).live,
    });
    assert.ok(JSON.parse(after.stdout).live > 0);
    assert.ok(
      requested.every((path) => files.includes(path)),
      "only published files are asked for",
    );
  } finally {
    clearTimeout(timer);
    controller.abort();
    await server.finished;
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("README.md links and pictures point only at published files", async () => {
  const files = await publishedFiles();
  const readme = await Deno.readTextFile(new URL("README.md", repoRoot));
  const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]);
  assert.ok(targets.some((target) => target.endsWith(".svg")), "the README shows a picture");
  for (const target of targets) {
    if (/^(https?:|mailto:|#)/.test(target)) continue;
    const path = target.replace(/^\.\//, "").replace(/#.*$/, "");
    assert.ok(files.includes(path), `README links to ${target}, which is not published`);
  }
});
