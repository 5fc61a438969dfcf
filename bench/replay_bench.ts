/**
 * `deno bench` view of the trace replays: the first 30,000 operations of
 * `bench/traces/git.rep` on every policy and peer, one fresh heap per
 * iteration over memory each target keeps (touched by earlier iterations). The full scoreboard (every trace, medians until stable,
 * utilization) is `deno run -A tools/trace/main.ts score bench/traces`.
 *
 * @module
 */

import { type DecodedTrace, decodeTrace } from "../tools/trace/decode.ts";
import { parseRep } from "../tools/trace/rep_format.ts";
import { heapBytesFor } from "../tools/trace/replay.ts";
import type { ReplayTarget } from "../tools/trace/replay_heap.ts";
import { glibcTarget } from "../tools/trace/target_ffi.ts";
import { physicalTarget } from "../tools/trace/target_physical.ts";
import { thingTarget } from "../tools/trace/target_thing.ts";

const PREFIX_OPS = 30_000;

const full = decodeTrace(
  parseRep(await Deno.readTextFile(new URL("./traces/git.rep", import.meta.url))),
  "git",
);
const trace: DecodedTrace = {
  ...full,
  opCount: PREFIX_OPS,
  kinds: full.kinds.subarray(0, PREFIX_OPS),
  ids: full.ids.subarray(0, PREFIX_OPS),
  sizesBytes: full.sizesBytes.subarray(0, PREFIX_OPS),
};
const heapBytes = heapBytesFor(full);

const targets: ReplayTarget[] = [
  physicalTarget({ policy: "tlsf" }),
  physicalTarget({ policy: "first-fit" }),
  thingTarget(),
  glibcTarget(),
];

for (const target of targets) {
  Deno.bench({
    name: `git.rep first ${PREFIX_OPS} ops on ${target.name}`,
    group: "replay",
    baseline: target.name === "tlsf",
    fn(context) {
      const heap = target.create(trace, heapBytes);
      context.start();
      heap.run(trace);
      context.end();
      heap.close();
    },
  });
}
