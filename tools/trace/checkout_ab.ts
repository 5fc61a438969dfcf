/**
 * Two checkouts of the package side by side in one process: each shipped
 * trace is replayed on a `PhysicalAllocator` from checkout A and one from
 * checkout B in turns, ROUNDS times each, and the minimum and median times
 * are printed with B's speed relative to A. One process and alternating
 * rounds keep a loaded machine's noise out of the ratio better than two
 * scoreboard runs; each checkout's modules (and so their compiled code) stay
 * apart.
 *
 * ```sh
 * git worktree add --detach /tmp/old 937b6dc
 * deno run -A tools/trace/checkout_ab.ts /tmp/old . [--layers] [--identity | --identity-b] [--only=git,jq] [ROUNDS]
 * ```
 *
 * `--layers` keeps the page-frame and slab layers on (default: blocks
 * alone); `--identity` puts A's heaps at 64 GiB and B's at 128 GiB in memory
 * from `mapIdentity` (default: buffers at 0x1000); `--identity-b` puts only
 * B's there, so `checkout_ab.ts . . --identity-b` times one checkout's
 * identity heap against its buffer heap (B/A: identity over buffer).
 *
 * @module
 */

import { decodeTrace } from "./decode.ts";
import { parseRep } from "./rep_format.ts";
import { freshCopy } from "./fresh_copy.ts";
import { heapBytesFor, REPLAY_KINDS, replayCalls } from "./replay.ts";

/** What this tool needs of a checkout's `mod.ts`. */
interface Checkout {
  // deno-lint-ignore no-explicit-any
  PhysicalAllocator: new (memory: any, options: any) => Heap;
  // deno-lint-ignore no-explicit-any
  bufferMemory(ranges: { start: number; length: number }[]): any;
  // deno-lint-ignore no-explicit-any
  mapIdentity(ranges: { start: number; length: number }[]): any;
}

interface Heap {
  tryAlloc(sizeBytes: number): number;
  free(address: number): void;
  realloc(address: number, sizeBytes: number): number;
  close(): void;
}

const USAGE =
  "usage: checkout_ab.ts DIR_A DIR_B [--layers] [--identity | --identity-b] [--only=T,...] [ROUNDS] (default 31)";
if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(USAGE);
  Deno.exit(0);
}
const args = Deno.args.filter((arg) => !arg.startsWith("-"));
const unknown = Deno.args.find((arg) =>
  arg.startsWith("-") && arg !== "--layers" && arg !== "--identity" && arg !== "--identity-b" &&
  !arg.startsWith("--only=")
);
if (args.length < 2 || unknown !== undefined) {
  console.error(unknown === undefined ? USAGE : `unknown flag '${unknown}'\n${USAGE}`);
  Deno.exit(2);
}
const [dirA, dirB] = args.map((dir) => new URL(`${dir}/`, `file://${Deno.cwd()}/`).href);
const rounds = Number(args[2] ?? 31);
const layers = Deno.args.includes("--layers");
const identityB = Deno.args.includes("--identity-b");
/** Per checkout: whether its heaps lie in memory from mapIdentity. */
const identity = [Deno.args.includes("--identity"), Deno.args.includes("--identity") || identityB];
const only = Deno.args.find((arg) => arg.startsWith("--only="))?.slice(7).split(",");
const checkouts: Checkout[] = [await import(`${dirA}mod.ts`), await import(`${dirB}mod.ts`)];
const bases = [64 * 2 ** 30, 128 * 2 ** 30];
// Each checkout runs a copy of its own: their type feedback stays apart.
const replays = [freshCopy(replayCalls, REPLAY_KINDS), freshCopy(replayCalls, REPLAY_KINDS)];
const traceDir = new URL("../../bench/traces/", import.meta.url);
const names = [...Deno.readDirSync(traceDir)].map((entry) => entry.name)
  .filter((name) => name.endsWith(".rep") && (only?.some((o) => name.startsWith(o)) ?? true))
  .sort();
const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const ratios: number[] = [];
for (const name of names) {
  const trace = decodeTrace(parseRep(Deno.readTextFileSync(new URL(name, traceDir))), name);
  const lengthBytes = Math.ceil(heapBytesFor(trace) / 4096) * 4096;
  const memories = checkouts.map((checkout, k) =>
    identity[k]
      ? checkout.mapIdentity([{ start: bases[k], length: lengthBytes }])
      : checkout.bufferMemory([{ start: 0x1000, length: lengthBytes }])
  );
  const slots = new Float64Array(trace.slotCount);
  const times: number[][] = [[], []];
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < 2; k++) {
      memories[k].regions[0].bytes.fill(0);
      const heap = new checkouts[k].PhysicalAllocator({ regions: memories[k].regions }, { layers });
      slots.fill(0);
      const started = performance.now();
      replays[k](heap, trace, slots);
      times[k].push(performance.now() - started);
      heap.close();
    }
  }
  for (const memory of memories) memory.close?.();
  const [minA, minB] = times.map((t) => sorted(t)[0]);
  const [medA, medB] = times.map((t) => sorted(t)[rounds >> 1]);
  ratios.push(minA / minB);
  console.log(
    `${name.padEnd(22)} A min ${minA.toFixed(1)} ms, median ${medA.toFixed(1)}; B min ${
      minB.toFixed(1)
    } ms, median ${medB.toFixed(1)}; B/A speed ${(minA / minB).toFixed(2)} (min), ${
      (medA / medB).toFixed(2)
    } (median)`,
  );
}
const geomean = Math.exp(ratios.reduce((sum, r) => sum + Math.log(r), 0) / ratios.length);
console.log(`geometric mean of B/A speed (min): ${geomean.toFixed(3)}`);
