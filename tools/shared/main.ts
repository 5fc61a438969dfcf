/**
 * The shared heap under several Workers: a throughput table from 1 to N
 * Workers, and the stress run (operations across Workers, corrupted
 * payloads, failed `check()`s).
 *
 *   deno run -A tools/shared/main.ts scale --workers 1,2,3,4 --operations 1000000
 *   deno run -A tools/shared/main.ts stress --workers 4 --operations 2500000 --rounds 1
 *
 * `scale` runs the "small" mix (workload in worker.ts: allocate 8 to 128
 * bytes uniform when the Worker holds fewer than 128 blocks and a roll
 * < 0.45, else free a random block it holds), payloads not filled, each
 * Worker its own `--operations`, after as many untimed operations of the
 * same mix (JIT warm-up, caches filled). The machine's other load makes
 * figures noisy; every row is the best of `--repeat` runs, and beside it the
 * best of the same Workers each on a heap of its own (nothing shared: the
 * scaling the machine gives this loop) and of CPU-only Workers. The last
 * line is the workload loop's own cost, run against a heap that does nothing.
 * `--workload refill` (worker.ts `refillStep`) makes every Worker cycle 512
 * objects of one size of its own (32, 64, 96, 128 bytes by Worker), so its
 * Worker cache refills or drains every 14 to 42 operations; `refill-same`
 * gives every Worker 32 bytes. `pages` is "mixed" with a quarter of its
 * allocations page runs (`allocPages` of order 0 to 2), freed by any Worker.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { modelCheck, runSharedWorkers } from "./run.ts";
import type { WorkloadName } from "./protocol.ts";

const USAGE = "usage: main.ts scale|stress [--workers 1,2,4] [--operations N] [--repeat N] " +
  "[--rounds N] [--workload small|mixed|refill|refill-same|pages] [--seed N]";

/**
 * Operations per Worker when `--operations` is not given. A scaling run of
 * 2 x 10^5 spread by more than the differences it is meant to show on a
 * 2-core machine.
 */
const SCALE_OPERATIONS = 1_000_000;
const STRESS_OPERATIONS = 200_000;

async function main(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      workers: { type: "string", default: "1,2,3,4" },
      operations: { type: "string", default: "" },
      repeat: { type: "string", default: "3" },
      rounds: { type: "string", default: "1" },
      workload: { type: "string", default: "" },
      seed: { type: "string", default: "1" },
    },
  });
  const counts = values.workers.split(",").map(Number);
  const operations = Number(
    values.operations || (positionals[0] === "scale" ? SCALE_OPERATIONS : STRESS_OPERATIONS),
  );
  const seed = Number(values.seed);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 15) || !(operations > 0)) {
    console.error(USAGE);
    return 2;
  }
  if (positionals[0] === "scale") {
    await scale(
      counts,
      operations,
      Number(values.repeat),
      (values.workload || "small") as WorkloadName,
      seed,
    );
    return 0;
  }
  if (positionals[0] === "stress") {
    const workload = (values.workload || "mixed") as WorkloadName;
    return await stress(counts[0], operations, Number(values.rounds), workload, seed);
  }
  console.error(USAGE);
  return 2;
}

async function scale(
  counts: number[],
  operations: number,
  repeat: number,
  workload: WorkloadName,
  seed: number,
): Promise<void> {
  console.log(`workload ${workload}, ${operations} operations per Worker, best of ${repeat}`);
  // Rounds interleave every row and its CPU-only ceiling, so a burst of other load
  // hits every row alike instead of one row's every repeat.
  const bestMs = counts.map(() => Infinity);
  const bestCpuMs = counts.map(() => Infinity);
  const ceilingMs = counts.map(() => Infinity);
  const separateMs = counts.map(() => Infinity);
  for (let r = 0; r < repeat; r++) {
    for (const [row, workers] of counts.entries()) {
      // The same Workers and mix twice: on one shared heap, then each on a heap of its own.
      const options = {
        workers,
        operations,
        seed: seed + r * 100,
        workload,
        fill: false,
        heapBytes: 32 << 20,
        warmupOperations: operations,
      };
      const run = await runSharedWorkers(options);
      const report = modelCheck(run);
      run.heap.close();
      if (report.corrupt !== 0) throw new Error(`corruption: ${report.firstProblem}`);
      bestMs[row] = Math.min(bestMs[row], run.wallMs);
      bestCpuMs[row] = Math.min(bestCpuMs[row], run.cpuMs);
      ceilingMs[row] = Math.min(ceilingMs[row], await cpuOnlyMs(workers));
      const apart = await runSharedWorkers({ ...options, separateHeaps: true });
      apart.heap.close();
      separateMs[row] = Math.min(separateMs[row], apart.wallMs);
    }
  }
  console.log(
    "workers | total ops | wall ms | ops/s (millions) | vs 1 Worker | ceiling (CPU-only Workers) | " +
      "a heap per Worker (vs 1) | CPU ns per op",
  );
  const rate = (row: number) => (counts[row] * operations) / (bestMs[row] / 1000);
  const ceiling = (row: number) => counts[row] / ceilingMs[row];
  for (const [row, workers] of counts.entries()) {
    console.log(
      `${workers} | ${workers * operations} | ${bestMs[row].toFixed(0)} | ${
        (rate(row) / 1e6).toFixed(2)
      } | ${(rate(row) / rate(0)).toFixed(2)}x | ${(ceiling(row) / ceiling(0)).toFixed(2)}x | ${
        (workers * separateMs[0] / separateMs[row]).toFixed(2)
      }x | ${(bestCpuMs[row] * 1e6 / (workers * operations)).toFixed(1)}`,
    );
  }
  const loopMs = await harnessMs(operations, repeat, workload, seed);
  console.log(
    `the workload loop alone (1 Worker, a heap that does nothing): ${
      (loopMs * 1e6 / operations).toFixed(1)
    } ns/op; ${counts[0]} Worker(s) with the heap: ${
      (bestMs[0] * 1e6 / (counts[0] * operations)).toFixed(1)
    } ns/op (wall)`,
  );
}

/** Best wall time of one Worker running the mix against a heap that does nothing. */
async function harnessMs(
  operations: number,
  repeat: number,
  workload: WorkloadName,
  seed: number,
): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < repeat; r++) {
    const run = await runSharedWorkers({
      workers: 1,
      operations,
      seed: seed + r * 100,
      workload,
      fill: false,
      heapBytes: 1 << 20,
      warmupOperations: operations,
      nullHeap: true,
    });
    run.heap.close();
    best = Math.min(best, run.wallMs);
  }
  return best;
}

const CPU_ONLY_WORKER = "self.onmessage = (e) => { let x = 0; " +
  "for (let i = 0; i < e.data; i++) x = (x * 31 + i) | 0; self.postMessage(x); };";

/**
 * Wall time of `workers` Workers each running the same pure-CPU loop (no
 * shared memory): the parallelism the machine gives right now, the
 * ceiling of any heap's scaling (other processes share the cores).
 */
export async function cpuOnlyMs(workers: number): Promise<number> {
  const source = `data:text/javascript,${encodeURIComponent(CPU_ONLY_WORKER)}`;
  const started = performance.now();
  await Promise.all(Array.from({ length: workers }, () =>
    new Promise((resolve) => {
      const worker = new Worker(source, { type: "module" });
      worker.onmessage = () => {
        worker.terminate();
        resolve(0);
      };
      worker.postMessage(100_000_000);
    })));
  return performance.now() - started;
}

async function stress(
  workers: number,
  operations: number,
  rounds: number,
  workload: WorkloadName,
  seed: number,
): Promise<number> {
  let total = 0;
  let corrupt = 0;
  let failedChecks = 0;
  for (let round = 0; round < rounds; round++) {
    const run = await runSharedWorkers({
      workers,
      operations,
      seed: seed + round * 1000,
      workload,
      fill: true,
      heapBytes: 32 << 20,
    });
    // Live kmalloc objects at the end of the round: the slab layer served the mix.
    const layers = run.heap.stats().layers;
    const slabObjects = layers?.slabinfo.reduce((sum, line) => sum + line.activeObjects, 0) ?? 0;
    try {
      const report = modelCheck(run);
      total += report.operations;
      corrupt += report.corrupt;
      if (report.firstProblem !== "") console.log(`round ${round}: ${report.firstProblem}`);
    } catch (error) {
      failedChecks++;
      console.log(`round ${round}: check() failed: ${(error as Error).message}`);
    } finally {
      run.heap.close();
    }
    const crossed = run.results.reduce((sum, result) => sum + result.received, 0);
    console.log(
      `round ${round}: ${workers} Workers, ${
        workers * operations
      } operations, ${crossed} blocks crossed Workers, ${run.wallMs.toFixed(0)} ms, layers ${
        layers === null ? "off" : `on (${slabObjects} slab objects in use at the end)`
      }`,
    );
  }
  console.log(
    `stress: ${total} operations across ${workers} Workers, ${corrupt} corrupted payloads, ${failedChecks} failed check()`,
  );
  return corrupt === 0 && failedChecks === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
