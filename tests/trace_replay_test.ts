import assert from "#assert";
import { HeapCorruptionError, POLICY_NAMES } from "../mod.ts";
import { decodeTrace } from "../tools/trace/decode.ts";
import { main } from "../tools/trace/main.ts";
import { parseRep } from "../tools/trace/rep_format.ts";
import { heapBytesFor, timeReplay, verifyReplay } from "../tools/trace/replay.ts";
import type { ReplayHeap, ReplayTarget } from "../tools/trace/replay_heap.ts";
import { evaluateGoals, scoreTraces } from "../tools/trace/score.ts";
import { physicalTarget } from "../tools/trace/target_physical.ts";
import { thingTarget } from "../tools/trace/target_thing.ts";
import { glibcTarget } from "../tools/trace/target_ffi.ts";

/** Every quirk, reallocs that grow, shrink and move, and blocks left live at the end. */
const TINY_REP = `0
8
20
1
a 0 100
a 1 0
r 2 64
a 3 4000
f -1
r 0 300
r 3 10
a 4 1
f 1
r 2 0
a 5 5000
r 0 9000
a 6 24
f 3
r 4 200
a 7 17
f 5
f 6
r 7 0
r 0 20
`;

const tiny = decodeTrace(parseRep(TINY_REP), "tiny");

Deno.test("verifyReplay() replays a tiny trace on both policies and passes check()", async (t) => {
  for (const policy of POLICY_NAMES) {
    await t.step(policy, () => {
      // Blocks alone: a slab per size class would dominate the footprint of five objects.
      const result = verifyReplay(
        physicalTarget({ policy, layers: false }),
        tiny,
        heapBytesFor(tiny),
      );
      assert.equal(result.failedRequests, 0);
      // After a 7 17: ids 0 (9000), 4 (200), 5 (5000), 6 (24) and 7 (17) are live.
      assert.equal(result.peakLiveBytes, 14241);
      assert.equal(result.peakLiveBlocks, 5);
      assert.ok(result.peakFootprintBytes >= result.peakLiveBytes);
      assert.ok(result.utilization > 0.5 && result.utilization <= 1);
      assert.ok(result.patternBytes > 0);
    });
  }
});

Deno.test("verifyReplay() replays a tiny trace over the page-frame and slab layers", () => {
  const result = verifyReplay(physicalTarget(), tiny, heapBytesFor(tiny));
  assert.equal(result.failedRequests, 0);
  assert.equal(result.peakLiveBytes, 14241);
  assert.ok(result.peakFootprintBytes >= result.peakLiveBytes);
  assert.ok(result.utilization > 0 && result.utilization <= 1);
});

Deno.test("verifyReplay() counts requests a small heap cannot satisfy", () => {
  const result = verifyReplay(physicalTarget(), tiny, 8192);
  assert.ok(result.failedRequests > 0);
});

Deno.test("verifyReplay() works on the peers too", () => {
  assert.equal(verifyReplay(thingTarget(), tiny, heapBytesFor(tiny)).failedRequests, 0);
  const glibc = verifyReplay(glibcTarget(), tiny, heapBytesFor(tiny));
  assert.equal(glibc.failedRequests, 0);
  assert.ok(Number.isNaN(glibc.utilization));
});

Deno.test("verifyReplay() catches an allocator that hands out overlapping payloads", () => {
  // A broken allocator: every allocation gets the same 64 KiB payload.
  const bytes = new Uint8Array(1 << 16);
  const broken: ReplayTarget = {
    name: "broken",
    own: false,
    headerBytesPerBlock: 0,
    create: (): ReplayHeap => ({
      baseAddress: 0,
      alloc: () => 8,
      free: () => {},
      realloc: () => 8,
      view: (address, length) => bytes.subarray(address, address + length),
      blockEnd: (address) => address + 9000,
      check: () => {},
      run: () => 0,
      close: () => {},
    }),
  };
  assert.throws(
    () => verifyReplay(broken, tiny, 1 << 16),
    (error) =>
      error instanceof HeapCorruptionError &&
      /Payload of id \d+ at 0x8 was overwritten before operation \d+/.test(error.message),
  );
});

Deno.test("timeReplay() reports a median over at least the minimum repetitions", () => {
  const time = timeReplay(physicalTarget({ policy: "first-fit" }), tiny, heapBytesFor(tiny), {
    budgetMs: 5,
    repetitionsMin: 3,
  });
  assert.ok(time.samplesMs.length >= 3);
  assert.ok(time.opsPerSecond > 0);
  assert.equal(time.failedRequests, 0);
});

Deno.test("scoreTraces() and evaluateGoals() score the project against the peers", () => {
  const rows = scoreTraces([tiny], [physicalTarget(), thingTarget(), glibcTarget()], {
    time: { budgetMs: 5, warmupRuns: 1 },
  });
  assert.deepEqual(rows.map((r) => r.target), ["tlsf", "@thi.ng/malloc", "glibc"]);
  assert.ok(rows.every((r) => r.error === undefined && r.opsPerSecond > 0));
  assert.equal(rows[0].headerOverheadBytes, 16 * 5);
  const goals = evaluateGoals(rows, "tlsf");
  assert.deepEqual(goals.map((g) => g.trace), ["tiny", "tiny", "tiny", "mean"]);
});

Deno.test("main.ts exits 0 on a verified replay, 1 on a bad trace, 2 on a usage error", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tiny.rep`, TINY_REP);
    await Deno.writeTextFile(`${dir}/bad.rep`, "0\n1\n1\n1\nq 0 1\n");
    const run = async (args: string[]) => {
      const command = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL("../tools/trace/main.ts", import.meta.url).pathname, ...args],
        stdout: "piped",
        stderr: "piped",
      });
      const output = await command.output();
      const decoder = new TextDecoder();
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
      };
    };
    await t.step("replay on both policies exits 0", async () => {
      const result = await run(["replay", "--policy", "all", `${dir}/tiny.rep`]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /tiny on tlsf: verified 20 operations, 0 failed requests/);
      assert.match(result.stdout, /tiny on first-fit: verified/);
    });
    await t.step("a malformed trace exits 1 naming the line", async () => {
      const result = await run(["replay", `${dir}/bad.rep`]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /line 5: unknown operation 'q'/);
    });
    await t.step("unknown commands, options and policies exit 2", async () => {
      assert.equal(await main(["frobnicate"]), 2);
      assert.equal(await main(["replay", "--no-such-option", `${dir}/tiny.rep`]), 2);
      assert.equal(await main(["replay", "--policy", "best-fit", `${dir}/tiny.rep`]), 2);
      assert.equal(await main(["score", "--peers", "nobody", `${dir}/tiny.rep`]), 2);
      assert.equal(await main(["replay"]), 2);
    });
    await t.step("score writes JSON and an SVG", async () => {
      const result = await run([
        "score",
        "--json",
        "--quiet",
        "--peers",
        "thing,glibc",
        "--budget-ms",
        "5",
        "--svg",
        `${dir}/chart.svg`,
        `${dir}/tiny.rep`,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const report = JSON.parse(result.stdout);
      assert.deepEqual(
        report.rows.map((r: { target: string }) => r.target),
        ["tlsf", "first-fit", "@thi.ng/malloc", "glibc"],
      );
      assert.match(await Deno.readTextFile(`${dir}/chart.svg`), /^<svg/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scoreTraces() keeps timing a steady target while another is still unsteady", () => {
  // A replay that spins for the given milliseconds per repetition, in turn.
  const spinning = (name: string, pattern: number[]): ReplayTarget => {
    let repetition = 0;
    return {
      name,
      own: false,
      headerBytesPerBlock: 0,
      create: (): ReplayHeap => ({
        baseAddress: 0,
        alloc: () => 0,
        free: () => {},
        realloc: () => 0,
        view: () => new Uint8Array(0),
        blockEnd: () => NaN,
        check: () => {},
        run: () => {
          const until = performance.now() + pattern[repetition++ % pattern.length];
          while (performance.now() < until) { /* spin */ }
          return 0;
        },
        close: () => {},
      }),
    };
  };
  const rows = scoreTraces(
    [tiny],
    [spinning("steady", [2]), spinning("unsteady", [1, 4])],
    { time: { budgetMs: 10_000, warmupRuns: 0, repetitionsMin: 5, repetitionsMax: 9 } },
  );
  // The unsteady target never settles, so it runs all 9 repetitions; the
  // steady one, settled after 5, runs beside it in the same rounds.
  assert.deepEqual(rows.map((r) => r.repetitions), [9, 9]);
});
