/**
 * Mutation testing, on demand (not in CI):
 *
 * ```text
 * deno run -A tools/mutate.ts [--only ID,ID...] [--list] [--no-suite] [--keep]
 * ```
 *
 * Applies each mutant of {@linkcode MUTANTS} (a realistic one-line change to
 * the core: blocks, policies, check, stats, debug mode, memory maps, identity
 * mapping, the Zig searches) to a clean temporary copy of the committed tree
 * (`git archive HEAD`: no `.zig-cache`, whose absolute paths let a copied tree
 * report stale "cached, passed" Zig results), runs the mutant's targeted
 * tests, and only if they all pass the whole suite. A mutant is killed when a
 * test fails; the kill rate counts the mutants not marked equivalent.
 *
 * Exit codes: 0 when every non-equivalent mutant is killed, 1 when one
 * survives, 2 on a usage error or a mutant whose line is not found once.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One single-line change and the tests expected to notice it. */
export interface Mutant {
  /** A short stable name. */
  readonly id: string;
  /** The file, relative to the repository root. */
  readonly file: string;
  /** Text that occurs exactly once in the file. */
  readonly find: string;
  /** Its replacement. */
  readonly replace: string;
  /** Test files run first; the suite runs only if they pass. */
  readonly tests: readonly string[];
  /** Set when the change cannot alter behaviour: why. Excluded from the kill rate. */
  readonly equivalent?: string;
}

const ALLOC_TESTS = ["tests/physical_allocator_test.ts", "tests/tlsf_fast_path_test.ts"];
const NATIVE_TESTS = ["tests/native_find_test.ts", "tests/native_differential_test.ts"];

/** The mutants, one line each, over every layer of the core. */
export const MUTANTS: readonly Mutant[] = [
  {
    id: "align-up-off-by-one",
    file: "allocator/_math.ts",
    find: "return (value + alignBytes - 1) & -alignBytes;",
    replace: "return (value + alignBytes) & -alignBytes;",
    tests: ["tests/block_test.ts"],
  },
  {
    id: "footer-written-8-early",
    file: "allocator/heap/block.ts",
    find: "this.writeU64(block + sizeBytes - FOOTER_BYTES, sizeBytes);",
    replace: "this.writeU64(block + sizeBytes - FOOTER_BYTES - 8, sizeBytes);",
    tests: ["tests/block_test.ts", ...ALLOC_TESTS],
  },
  {
    id: "carve-splits-only-above-min",
    file: "allocator/heap/block_edits.ts",
    find: "const splitTail = remainderBytes >= MIN_BLOCK_BYTES;",
    replace: "const splitTail = remainderBytes > MIN_BLOCK_BYTES;",
    tests: ["tests/tlsf_fast_path_test.ts"],
  },
  {
    id: "stats-largest-free-16-high",
    file: "allocator/heap/physical_allocator.ts",
    find: "largestFreeBytes: largest === 0 ? 0 : largest - HEADER_BYTES,",
    replace: "largestFreeBytes: largest === 0 ? 0 : largest,",
    tests: ["tests/mutation_gaps_test.ts"],
  },
  {
    id: "move-skips-predecessor-check",
    file: "allocator/heap/physical_allocator.ts",
    find: "    this.#edits.checkedPredecessor(block, blocks.flags(block));\n    const oldSizeBytes",
    replace: "    const oldSizeBytes",
    tests: ["tests/mutation_gaps_test.ts"],
  },
  {
    id: "free-last-flag-from-wrong-block",
    file: "allocator/heap/block_edits.ts",
    find: "last = blocks.flags(next) & FLAG_LAST;",
    replace: "last = flags & FLAG_LAST;",
    tests: ["tests/mutation_gaps_test.ts"],
  },
  {
    id: "alignment-power-of-two-unchecked",
    file: "allocator/heap/physical_allocator.ts",
    find: "alignBytes > ALIGN_BYTES_MAX || (alignBytes & (alignBytes - 1)) !== 0",
    replace: "alignBytes > ALIGN_BYTES_MAX",
    tests: ["tests/bad_input_catalog_test.ts"],
  },
  {
    id: "detached-buffer-unnoticed",
    file: "allocator/heap/physical_allocator.ts",
    find:
      "if (this.#window.byteLength !== this.#windowBytes) {\n      throw new MemoryDetachedError(",
    replace: "if (this.#window.byteLength < 0) {\n      throw new MemoryDetachedError(",
    tests: ["tests/bad_input_catalog_test.ts"],
  },
  {
    id: "live-heap-magic-ignored",
    file: "allocator/heap/physical_allocator.ts",
    find: "if (control.word(CONTROL_MAGIC_OFFSET) !== CONTROL_MAGIC) return;",
    replace: "return;",
    tests: ["tests/memory_safety_test.ts"],
  },
  {
    id: "window-below-buffer-accepted",
    file: "allocator/memory/physical_memory.ts",
    find: "if (byteOffset < 0 || byteOffset % 4 !== 0) {",
    replace: "if (byteOffset % 4 !== 0) {",
    tests: ["tests/bad_input_catalog_test.ts"],
  },
  {
    id: "key-left-out-of-ts-check",
    file: "allocator/heap/layout.ts",
    find: "imul(word1 ^ HEADER_MAGIC ^ key, 0x85ebca77)",
    replace: "imul(word1 ^ HEADER_MAGIC, 0x85ebca77)",
    tests: ["tests/layout_test.ts", "tests/block_test.ts"],
  },
  {
    id: "first-fit-ts-strict-size",
    file: "allocator/heap/policy/first_fit.ts",
    find: "if (size >= blockSizeBytes) return block;",
    replace: "if (size > blockSizeBytes) return block;",
    tests: ["tests/native_differential_test.ts", "tests/physical_allocator_test.ts"],
  },
  {
    id: "tlsf-search-class-not-rounded",
    file: "allocator/heap/policy/tlsf.ts",
    find: "return classOf(sizeBytes + (1 << (31 - Math.clz32(sizeBytes) - SL_LOG2)) - 1);",
    replace: "return classOf(sizeBytes);",
    tests: ["tests/policy_tlsf_test.ts", ...ALLOC_TESTS],
  },
  {
    id: "fast-path-split-threshold",
    file: "allocator/heap/policy/tlsf_fast_path.ts",
    find: "    let last = word0 & 4;\n    if (remainder >= 40) {",
    replace: "    let last = word0 & 4;\n    if (remainder >= 48) {",
    tests: ["tests/tlsf_fast_path_test.ts"],
  },
  ...(["tlsf_narrow_fast_path", "tlsf_compact_fast_path"] as const).map((twin) => ({
    id: `fast-path-split-threshold-${twin.slice(5, -10)}`,
    file: `allocator/heap/policy/${twin}.ts`,
    find: "    let last = word0 & 4;\n    if (remainder >= 40) {",
    replace: "    let last = word0 & 4;\n    if (remainder >= 48) {",
    tests: ["tests/tlsf_fast_path_test.ts"],
  })),
  {
    id: "check-ignores-footer",
    file: "allocator/heap/check/heap_check.ts",
    find:
      'if (blocks.previousFooter(block + size) !== size) corrupt(block, "the footer != the size");',
    replace: "",
    tests: ["tests/corruption_test.ts"],
  },
  {
    id: "check-ignores-last-flag",
    file: "allocator/heap/check/heap_check.ts",
    find: "if (((flags & FLAG_LAST) !== 0) !== (block + size === region.blockEnd)) {",
    replace: "if (false) {",
    tests: ["tests/corruption_test.ts"],
  },
  {
    id: "debug-guard-misses-absorbed-tail",
    file: "allocator/heap/check/debug_guard.ts",
    find: 'this.verifyFree(block, start, start + blockSizeBytes + MIN_BLOCK_BYTES, "allocate");',
    replace: 'this.verifyFree(block, start, start + blockSizeBytes, "allocate");',
    tests: ["tests/mutation_gaps_test.ts", "tests/debug_guard_test.ts"],
  },
  {
    id: "debug-guard-fill-short",
    file: "allocator/heap/check/debug_guard.ts",
    find: "this.#bytes.fill(GUARD_BYTE, end - this.#blocks.slack(block) - base, end - base);",
    replace:
      "this.#bytes.fill(GUARD_BYTE, end - this.#blocks.slack(block) - base + 1, end - base);",
    tests: ["tests/debug_guard_test.ts"],
  },
  {
    id: "map-page-start-rounded-down",
    file: "allocator/memory_map/normalize.ts",
    find: "const alignedStart = Math.ceil(start / pageBytes) * pageBytes;",
    replace: "const alignedStart = Math.floor(start / pageBytes) * pageBytes;",
    tests: ["tests/memory_map_test.ts"],
  },
  {
    id: "map-end-not-exclusive",
    file: "allocator/memory_map/parse.ts",
    find:
      "return { start, end: last + 1, type: memoryTypeFromName(firmwareType), origin, firmwareType };",
    replace:
      "return { start, end: last, type: memoryTypeFromName(firmwareType), origin, firmwareType };",
    tests: ["tests/memory_map_test.ts"],
  },
  {
    id: "relocation-stride-not-2mib",
    file: "allocator/memory/identity_memory.ts",
    find: "const strideBytes = alignUp(range.length, RELOCATION_ALIGN_BYTES);",
    replace: "const strideBytes = range.length;",
    tests: ["tests/identity_memory_test.ts"],
  },
  {
    id: "zig-first-fit-ignores-alignment",
    file: "native/first_fit.zig",
    find: "if (fit.fits(block, size_bytes, block_size_bytes, align_bytes)) return block;",
    replace: "if (size_bytes >= block_size_bytes) return block;",
    tests: NATIVE_TESTS,
  },
  {
    id: "zig-tlsf-search-not-rounded",
    file: "native/tlsf.zig",
    find: "rounded += (@as(u64, 1) << (f - layout.sl_log2)) - 1;",
    replace: "rounded += 0;",
    tests: NATIVE_TESTS,
  },
  {
    id: "zig-tlsf-skips-own-second-level",
    file: "native/tlsf.zig",
    find: "if (sl_map != 0) return .{ .fl = class.fl, .sl = @ctz(sl_map) };",
    replace: "if (sl_map == 0xffff_ffff) return .{ .fl = class.fl, .sl = @ctz(sl_map) };",
    tests: NATIVE_TESTS,
  },
  {
    id: "zig-window-bound-off-by-len",
    file: "native/window.zig",
    find:
      "if (offset > self.window_bytes or self.window_bytes - offset < len) return error.OutOfWindow;",
    replace: "if (offset > self.window_bytes) return error.OutOfWindow;",
    tests: NATIVE_TESTS,
  },
  {
    id: "zig-key-left-out",
    file: "native/header.zig",
    find: "((word1 ^ layout.header_magic ^ key) *% 0x85ebca77) ^",
    replace: "((word1 ^ layout.header_magic) *% 0x85ebca77) ^",
    tests: ["tests/layout_test.ts", ...NATIVE_TESTS],
  },
  {
    id: "zig-link-unchecked",
    file: "native/first_fit.zig",
    find: "const next = try window.checkLink(try window.readU64(block + layout.free_next_offset));",
    replace: "const next = try window.readU64(block + layout.free_next_offset);",
    tests: NATIVE_TESTS,
  },
];

/** What became of one mutant. */
type Outcome = "killed (targeted)" | "killed (suite)" | "survived" | "equivalent";

const TEST_FLAGS = ["--allow-ffi", "--allow-read", "--allow-write", "--allow-run", "--allow-env"];
/** A command that runs longer than this counts as a kill (a hang the mutant caused). */
const COMMAND_TIMEOUT_MS = 5 * 60 * 1000;

async function run(cwd: string, command: string, args: string[]): Promise<boolean> {
  const child = new Deno.Command(command, {
    args,
    cwd,
    stdout: "null",
    stderr: "null",
    env: { CI: "true", PMA_NATIVE_LIB: `${cwd}/zig-out/lib/libpma.so` },
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), COMMAND_TIMEOUT_MS);
  const status = await child.status;
  clearTimeout(timer);
  return status.success;
}

/** Builds libpma in the copy (Zig tests first when the mutant is in Zig); false if that fails. */
async function buildNative(cwd: string, zigTests: boolean): Promise<boolean> {
  if (zigTests && !await run(cwd, "bash", ["tools/zig.sh", "build", "test"])) return false;
  return run(cwd, "bash", ["tools/zig.sh", "build", "-Doptimize=ReleaseFast"]);
}

async function runMutant(cwd: string, mutant: Mutant, suite: boolean): Promise<Outcome> {
  if (mutant.equivalent !== undefined) return "equivalent";
  const path = `${cwd}/${mutant.file}`;
  const original = await Deno.readTextFile(path);
  await Deno.writeTextFile(path, original.replace(mutant.find, mutant.replace));
  try {
    const zig = mutant.file.endsWith(".zig");
    if (zig && !await buildNative(cwd, true)) return "killed (targeted)";
    if (!await run(cwd, "deno", ["test", ...TEST_FLAGS, ...mutant.tests])) {
      return "killed (targeted)";
    }
    if (!suite) return "survived";
    return await run(cwd, "deno", ["test", ...TEST_FLAGS, "--doc"]) ? "survived" : "killed (suite)";
  } finally {
    await Deno.writeTextFile(path, original);
    if (mutant.file.endsWith(".zig")) await buildNative(cwd, false);
  }
}

/** Checks every mutant's text occurs exactly once; returns the problems. */
async function verifyMutants(root: string, mutants: readonly Mutant[]): Promise<string[]> {
  const problems: string[] = [];
  for (const mutant of mutants) {
    const text = await Deno.readTextFile(`${root}/${mutant.file}`);
    const count = text.split(mutant.find).length - 1;
    if (count !== 1) problems.push(`${mutant.id}: found ${count} times in ${mutant.file}`);
  }
  return problems;
}

/** A clean copy of the committed tree, with the pinned Zig toolchain linked in and libpma built. */
async function cleanCopy(root: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pma-mutate-" });
  const archive = new Deno.Command("bash", {
    args: ["-c", `git -C "${root}" archive HEAD | tar -x -C "${dir}"`],
  });
  if (!(await archive.output()).success) throw new Error("git archive HEAD failed");
  try {
    await Deno.symlink(await Deno.realPath(`${root}/.zig`), `${dir}/.zig`);
  } catch {
    // No local toolchain: tools/zig.sh installs the pinned one.
  }
  if (!await buildNative(dir, false)) throw new Error(`cannot build libpma in ${dir}`);
  return dir;
}

async function main(args: string[]): Promise<number> {
  const parsed = parseArgs({
    args,
    options: {
      only: { type: "string" },
      list: { type: "boolean" },
      "no-suite": { type: "boolean" },
      keep: { type: "boolean" },
    },
  });
  const only = parsed.values.only?.split(",");
  const mutants = only === undefined ? MUTANTS : MUTANTS.filter((m) => only.includes(m.id));
  if (parsed.values.list) {
    for (const m of MUTANTS) console.log(`${m.id.padEnd(36)} ${m.file}`);
    return 0;
  }
  const root = new URL("..", import.meta.url).pathname;
  const problems = await verifyMutants(root, mutants);
  if (problems.length > 0 || mutants.length === 0) {
    console.error(problems.length > 0 ? problems.join("\n") : `no mutant matches ${only}`);
    return 2;
  }
  const dir = await cleanCopy(root);
  const outcomes: [Mutant, Outcome][] = [];
  try {
    for (const mutant of mutants) {
      const started = performance.now();
      const outcome = await runMutant(dir, mutant, parsed.values["no-suite"] !== true);
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      console.log(`${outcome.padEnd(18)} ${mutant.id} (${seconds} s)`);
      outcomes.push([mutant, outcome]);
    }
  } finally {
    if (parsed.values.keep !== true) await Deno.remove(dir, { recursive: true });
  }
  const counted = outcomes.filter(([, o]) => o !== "equivalent");
  const killed = counted.filter(([, o]) => o.startsWith("killed")).length;
  const rate = counted.length === 0 ? 100 : (100 * killed) / counted.length;
  console.log(`mutants: ${killed} of ${counted.length} killed (${rate.toFixed(0)}%)`);
  for (const [m] of counted.filter(([, o]) => o === "survived")) console.log(`survived: ${m.id}`);
  return killed === counted.length ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
