/**
 * The CI fuzz: a fixed-seed differential run of about 200k operations
 * (tools/fuzz.ts), split across policies, paths and debug mode, and proof
 * that the reproducer and the shrinker work on an injected failure.
 */
import assert from "#assert";
import { type FuzzPath, runOps } from "../tools/fuzz/runner.ts";
import { shrinkOps } from "../tools/fuzz/shrink.ts";
import {
  formatOp,
  OP_ALLOC,
  OP_FREE,
  OP_LAYOUT,
  OpStream,
  parseOps,
  REGION_LAYOUTS,
  streamOps,
} from "../tools/fuzz/stream.ts";
import { CHECK_EVERY_DEFAULT, injectAtLive, main } from "../tools/fuzz.ts";
import { nativeOrSkip } from "./support/native_library.ts";

const SEED = 20260526;
const native = nativeOrSkip("the native lane of tests/fuzz_test.ts");
const PATHS: FuzzPath[] = native === null ? ["ts"] : ["ts", "native"];

function* take(seed: number, count: number) {
  const stream = new OpStream(seed);
  for (let i = 0; i < count; i++) yield stream.next();
}

/** [policy, operations, debug, checkEvery]: 200k operations in all, each on every path. */
const RUNS = [
  ["tlsf", 80_000, false, CHECK_EVERY_DEFAULT],
  ["first-fit", 80_000, false, CHECK_EVERY_DEFAULT],
  ["tlsf", 20_000, true, 64],
  ["first-fit", 20_000, true, 64],
] as const;

for (const [policy, ops, debug, checkEvery] of RUNS) {
  Deno.test(`fuzz (${policy}${debug ? ", debug" : ""}, ${PATHS.join("+")}) runs ${ops} operations of seed ${SEED} without a failure`, () => {
    const result = runOps(take(SEED + ops, ops), { policy, paths: PATHS, checkEvery, debug });
    assert.equal(result.failure, null, result.failure?.message);
    assert.equal(result.opsRun, ops);
    assert.ok(result.heapCalls > ops, "exhaust phases make many calls");
  });
}

/**
 * [name, baseShift]: the TLSF lanes again with every layout moved above 4 GiB, and moved so that
 * the first layout's one region straddles 4 GiB (the window's low address words wrap inside it).
 */
const HIGH_RUNS = [
  ["above 4 GiB", 2 ** 32],
  ["straddling 4 GiB", 2 ** 32 - 0x40000],
] as const;
const HIGH_OPS = 60_000;

for (const [where, baseShift] of HIGH_RUNS) {
  Deno.test(`fuzz (tlsf, ${PATHS.join("+")}, windows ${where}) runs ${HIGH_OPS} operations of seed ${SEED} without a failure`, () => {
    const result = runOps(take(SEED + HIGH_OPS, HIGH_OPS), {
      policy: "tlsf",
      paths: PATHS,
      checkEvery: CHECK_EVERY_DEFAULT,
      baseShift,
    });
    assert.equal(result.failure, null, result.failure?.message);
    assert.equal(result.opsRun, HIGH_OPS);
    assert.ok(result.heapCalls > HIGH_OPS, "exhaust phases make many calls");
  });
}

/**
 * The TLSF lanes over identity-mapped windows of 2^31 bytes and more (MAPPED_LAYOUTS: the last
 * region straddles the window's first 2^31 bytes, where the fast path's span ends, and a window
 * of 6 GiB whose regions lie far apart), and one region (the compact twin's window), above
 * 4 GiB; the last two layouts are large enough for the page-frame and slab layers (this seed's
 * stream takes the window of more than 2^31 bytes with them). Each lane's heap in memory of its own.
 */
const MAPPED_OPS = 40_000;

Deno.test(`fuzz (tlsf, ${PATHS.join("+")}, identity-mapped windows of 2^31 bytes and more) runs ${MAPPED_OPS} operations of seed ${SEED} without a failure`, () => {
  const result = runOps(take(SEED + MAPPED_OPS + 1, MAPPED_OPS), {
    policy: "tlsf",
    paths: PATHS,
    checkEvery: CHECK_EVERY_DEFAULT,
    mapped: true,
    // Far up, where nothing else of the test process maps (the layouts are never relocated).
    baseShift: 0x2200_0000_0000,
  });
  assert.equal(result.failure, null, result.failure?.message);
  assert.equal(result.opsRun, MAPPED_OPS);
  assert.ok(result.heapCalls > MAPPED_OPS, "exhaust phases make many calls");
});

Deno.test("fuzz streams are a pure function of the seed and cover every operation kind", () => {
  const ops = streamOps(7, 200_000);
  assert.deepEqual(ops.slice(0, 1000), streamOps(7, 1000));
  const kinds = new Set(ops.map((op) => op.kind));
  assert.equal(kinds.size, 5);
  assert.equal(ops[0].kind, OP_LAYOUT);
  for (const layout of REGION_LAYOUTS) {
    layout.forEach((range, i) => i === 0 || assert.ok(range.start >= layout[i - 1].start));
  }
  const text = ops.slice(0, 500).map(formatOp).join("\n");
  assert.deepEqual(parseOps(text), ops.slice(0, 500));
});

Deno.test("shrinkOps() reduces an injected failure to the operations it needs", () => {
  const config = { policy: "tlsf" as const, paths: ["ts" as const], checkEvery: 1 };
  const inject = injectAtLive(6);
  const failing = runOps(take(3, 100_000), { ...config, inject });
  assert.ok(failing.failure !== null);
  const prefix = streamOps(3, failing.failure.index + 1);
  const shrunk = shrinkOps(prefix, (ops) => runOps(ops, { ...config, inject }).failure !== null);
  assert.ok(shrunk.minimal);
  // Seven allocations that succeed and one free leave six live: nothing else is needed.
  assert.equal(shrunk.ops.length, 8, shrunk.ops.map(formatOp).join("; "));
  assert.deepEqual(shrunk.ops.map((op) => op.kind), [...Array(7).fill(OP_ALLOC), OP_FREE]);
  assert.ok(runOps(shrunk.ops, { ...config, inject }).failure !== null);
});

Deno.test("deno task fuzz prints a one-line reproducer and a shrunk list on a failure", async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => lines.push(args.join(" "));
  let code: number;
  try {
    code = await main(["--seed", "1", "--ops", "5000", "--path", "ts", "--inject-live", "5"]);
  } finally {
    console.log = log;
  }
  assert.equal(code, 1);
  const reproducer = lines.find((line) => line.startsWith("deno task fuzz "));
  assert.ok(reproducer, lines.join("\n"));
  const match = /--seed 1 --ops (\d+) .*--inject-live 5 # fails at op (\d+)$/.exec(reproducer);
  assert.ok(match, reproducer);
  assert.equal(Number(match[1]), Number(match[2]) + 1);
  const shrunk = parseOps(lines.slice(lines.indexOf(reproducer) + 2).join("\n"));
  assert.equal(shrunk.length, 7);
});
