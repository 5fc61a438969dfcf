/**
 * Two checkouts' shared heaps under the same Workers and mix, side by side in
 * one process: every repeat runs each row (a Worker count) on checkout A,
 * then on checkout B, then B's Workers each on a heap of its own (nothing
 * shared: the scaling the machine gives the loop), then the CPU-only
 * ceiling, so a burst of other load hits both alike; each row prints the
 * best wall time of each and B's speed relative to A.
 *
 * ```sh
 * git worktree add --detach /tmp/old main   # or: git archive main | tar -x -C /tmp/old
 * cp tools/shared/*.ts /tmp/old/tools/shared/   # A runs this branch's driver and mixes
 * deno run -A tools/shared/ab.ts /tmp/old . --workers 1,2 --operations 500000 --repeat 5 --workload refill
 * ```
 *
 * Each checkout's Workers load that checkout's `tools/shared/worker.ts`
 * (and so its allocator); A's `tools/shared/` must know the workload.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import type { SharedRun, SharedRunOptions } from "./run.ts";
import type { WorkloadName } from "./protocol.ts";
import { cpuOnlyMs } from "./main.ts";

const USAGE = "usage: ab.ts <checkout A> <checkout B> [--workers 1,2] [--operations N] " +
  "[--repeat N] [--workload small|mixed|refill|refill-same|pages] [--seed N]";

/** What this tool needs of a checkout's tools/shared/run.ts. */
interface RunModule {
  runSharedWorkers(options: SharedRunOptions): Promise<SharedRun>;
  modelCheck(run: SharedRun): { corrupt: number; firstProblem: string };
}

async function main(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      workers: { type: "string", default: "1,2" },
      operations: { type: "string", default: "500000" },
      repeat: { type: "string", default: "5" },
      workload: { type: "string", default: "refill" },
      seed: { type: "string", default: "1" },
    },
  });
  const counts = values.workers.split(",").map(Number);
  const operations = Number(values.operations);
  if (
    positionals.length !== 2 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > 15) ||
    !(operations > 0)
  ) {
    console.error(USAGE);
    return 2;
  }
  const checkouts: RunModule[] = [];
  for (const path of positionals) {
    const url = pathToFileURL(`${Deno.realPathSync(path)}/tools/shared/run.ts`).href;
    checkouts.push(await import(url) as RunModule);
  }
  const workload = values.workload as WorkloadName;
  const repeat = Number(values.repeat);
  const seed = Number(values.seed);
  console.log(
    `workload ${workload}, ${operations} operations per Worker, best of ${repeat}; A = ${
      positionals[0]
    }, B = ${positionals[1]}`,
  );
  const bestMs = counts.map(() => [Infinity, Infinity]);
  const ceilingMs = counts.map(() => Infinity);
  const apartMs = counts.map(() => Infinity);
  for (let r = 0; r < repeat; r++) {
    for (const [row, workers] of counts.entries()) {
      for (const [side, checkout] of checkouts.entries()) {
        const run = await checkout.runSharedWorkers({
          workers,
          operations,
          seed: seed + r * 100,
          workload,
          fill: false,
          heapBytes: 32 << 20,
          warmupOperations: operations,
        });
        const report = checkout.modelCheck(run);
        run.heap.close();
        if (report.corrupt !== 0) throw new Error(`corruption: ${report.firstProblem}`);
        bestMs[row][side] = Math.min(bestMs[row][side], run.wallMs);
      }
      // B's Workers each on a heap of its own: what the machine gives this loop with nothing shared.
      const apart = await checkouts[1].runSharedWorkers({
        workers,
        operations,
        seed: seed + r * 100,
        workload,
        fill: false,
        heapBytes: 32 << 20,
        warmupOperations: operations,
        separateHeaps: true,
      });
      apart.heap.close();
      apartMs[row] = Math.min(apartMs[row], apart.wallMs);
      ceilingMs[row] = Math.min(ceilingMs[row], await cpuOnlyMs(workers));
    }
  }
  console.log(
    "workers | A wall ms | B wall ms | B speed vs A | A vs its 1st row | B vs its 1st row | " +
      "B, a heap per Worker (vs 1st row) | ceiling (CPU-only Workers)",
  );
  for (const [row, workers] of counts.entries()) {
    const [a, b] = bestMs[row];
    const scaling = (side: number) =>
      (workers * bestMs[0][side] / counts[0] / bestMs[row][side]).toFixed(2);
    console.log(
      `${workers} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(a / b).toFixed(2)}x | ${scaling(0)}x | ${
        scaling(1)
      }x | ${(workers * apartMs[0] / counts[0] / apartMs[row]).toFixed(2)}x | ${
        (workers * ceilingMs[0] / counts[0] / ceilingMs[row]).toFixed(2)
      }x`,
    );
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
