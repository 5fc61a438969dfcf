/**
 * The differential fuzzer:
 *
 * ```text
 * deno task fuzz [--seed S] [--ops N] [--policy tlsf|first-fit|all] [--path ts|native|both]
 *                [--check-every K] [--thorough] [--debug] [--replay FILE] [--shrink-seconds T]
 *                [--inject-live N] [--help]
 * ```
 *
 * Runs the seed's operation stream (tools/fuzz/stream.ts: several size
 * distributions, mixed alignments, realloc, exhaustion phases, five region
 * layouts including a thousand tiny regions) on each policy, on the TS path,
 * the native path or both in lockstep, and checks every answer
 * (tools/fuzz/runner.ts documents which checks run every operation and which
 * every K operations; `--thorough` runs all of them every operation).
 *
 * `--inject-live N` injects a failure after any free that leaves N live
 * allocations: a known failure for testing the reproducer and the shrinker.
 *
 * On the first failure it prints a one-line reproducer and the failing epoch
 * shrunk by delta debugging (in the format `--replay` reads), and exits 1.
 * `--help` (`-h`) prints every flag with its default and exits 0.
 * Exit codes: 0 no failure, 1 a failure, 2 a usage error or a missing native library.
 *
 * @module
 */

import { parseArgs } from "#cli";
import { loadNative } from "../native/loader.ts";
import { isPolicyName, POLICY_NAMES, type PolicyName } from "../mod.ts";
import { type FuzzPath, type RunConfig, runOps } from "./fuzz/runner.ts";
import { shrinkOps } from "./fuzz/shrink.ts";
import { epochOf, formatOp, type FuzzOp, OP_FREE, OpStream, parseOps } from "./fuzz/stream.ts";

/**
 * Default `--check-every`: `check()` costs O(heap), so it runs every this many operations.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CHECK_EVERY_DEFAULT } from "./fuzz.ts";
 *
 * assert.ok(CHECK_EVERY_DEFAULT > 1);
 * ```
 */
export const CHECK_EVERY_DEFAULT = 256;

/** The flags' defaults: one source for the parser and the usage text. */
const DEFAULTS = {
  seed: "1",
  ops: "100000",
  policy: "all",
  path: "both",
  checkEvery: String(CHECK_EVERY_DEFAULT),
  shrinkSeconds: "60",
} as const;

const USAGE = `usage: deno task fuzz [OPTIONS]
       deno run --allow-ffi --allow-read --allow-env tools/fuzz.ts [OPTIONS]

Runs a seeded stream of allocator operations on each policy and path, checks
every answer, and on a failure prints a reproducer and a shrunk operation list.

  --seed S            the stream's seed (default ${DEFAULTS.seed})
  --ops N             operations per policy (default ${DEFAULTS.ops})
  --policy P          tlsf, first-fit or all (default ${DEFAULTS.policy})
  --path P            ts, native or both in lockstep (default ${DEFAULTS.path}); native
                      needs --allow-ffi and the built library
  --check-every K     run check() every K operations (default ${DEFAULTS.checkEvery})
  --thorough          run every check after every operation
  --debug             use the allocator's debug mode (poisoned free memory)
  --replay FILE       replay an operation list (the shrunk list a failure prints)
  --shrink-seconds T  time budget of the shrinker (default ${DEFAULTS.shrinkSeconds})
  --inject-live N     fail after any free that leaves N live allocations (tests the shrinker)
  -h, --help          print this help and exit

Exit codes: 0 no failure, 1 a failure, 2 a usage error or a missing native library.`;

/** A command-line mistake (exit code 2). */
class UsageError extends Error {}

interface Settings {
  readonly seed: number;
  readonly ops: number;
  readonly policies: PolicyName[];
  readonly paths: FuzzPath[];
  readonly pathName: string;
  readonly checkEvery: number;
  readonly thorough: boolean;
  readonly debug: boolean;
  readonly replay?: string;
  readonly shrinkSeconds: number;
  readonly injectLive?: number;
}

function integer(value: string, name: string, min: number): number {
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number) || number < min) {
    throw new UsageError(`--${name} must be an integer of at least ${min}, got '${value}'`);
  }
  return number;
}

function parseSettings(args: readonly string[]): Settings {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        seed: { type: "string", default: DEFAULTS.seed },
        ops: { type: "string", default: DEFAULTS.ops },
        policy: { type: "string", default: DEFAULTS.policy },
        path: { type: "string", default: DEFAULTS.path },
        "check-every": { type: "string", default: DEFAULTS.checkEvery },
        thorough: { type: "boolean", default: false },
        debug: { type: "boolean", default: false },
        replay: { type: "string" },
        "shrink-seconds": { type: "string", default: DEFAULTS.shrinkSeconds },
        "inject-live": { type: "string" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]);
  }
  const v = parsed.values;
  const policy = v.policy;
  if (policy !== "all" && !isPolicyName(policy)) {
    throw new UsageError(`--policy must be ${POLICY_NAMES.join(", ")} or all, got '${policy}'`);
  }
  const path = v.path;
  if (path !== "ts" && path !== "native" && path !== "both") {
    throw new UsageError(`--path must be ts, native or both, got '${path}'`);
  }
  const thorough = v.thorough;
  return {
    seed: integer(v.seed, "seed", 0),
    ops: integer(v.ops, "ops", 1),
    policies: policy === "all" ? [...POLICY_NAMES] : [policy],
    paths: path === "both" ? ["ts", "native"] : [path],
    pathName: path,
    checkEvery: thorough ? 1 : integer(v["check-every"], "check-every", 1),
    thorough,
    debug: v.debug,
    replay: v.replay,
    shrinkSeconds: integer(v["shrink-seconds"], "shrink-seconds", 0),
    injectLive: v["inject-live"] === undefined
      ? undefined
      : integer(v["inject-live"], "inject-live", 0),
  };
}

/** Long runs report progress on stderr every this many operations. */
const PROGRESS_OPS = 5_000_000;

function* take(seed: number, count: number, label: string): Generator<FuzzOp> {
  const stream = new OpStream(seed);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    if (i > 0 && i % PROGRESS_OPS === 0) {
      const seconds = ((performance.now() - started) / 1000).toFixed(0);
      console.error(`fuzz ${label}: ${i} ops, no failure so far, ${seconds} s`);
    }
    yield stream.next();
  }
}

/** The flags that reproduce a run, after `--seed` and `--ops`. */
function flagsOf(settings: Settings, policy: PolicyName): string {
  const flags = [`--policy ${policy}`, `--path ${settings.pathName}`];
  if (settings.thorough) flags.push("--thorough");
  else if (settings.checkEvery !== CHECK_EVERY_DEFAULT) {
    flags.push(`--check-every ${settings.checkEvery}`);
  }
  if (settings.debug) flags.push("--debug");
  if (settings.injectLive !== undefined) flags.push(`--inject-live ${settings.injectLive}`);
  return flags.join(" ");
}

/**
 * A fault for testing: fails after any free that leaves `liveCount` live allocations.
 *
 * @param liveCount The live count that triggers the failure.
 * @returns The hook for `RunConfig.inject`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { injectAtLive } from "./fuzz.ts";
 * import { runOps } from "./fuzz/runner.ts";
 * import { streamOps } from "./fuzz/stream.ts";
 *
 * const config = { policy: "tlsf" as const, paths: ["ts" as const], checkEvery: 1 };
 * const result = runOps(streamOps(1, 5000), { ...config, inject: injectAtLive(3) });
 * assert.match(result.failure!.message, /injected failure/);
 * ```
 */
export function injectAtLive(liveCount: number): NonNullable<RunConfig["inject"]> {
  return (op, live) =>
    op.kind === OP_FREE && live === liveCount
      ? `injected failure: a free left ${live} live allocations`
      : null;
}

/** Fuzzes one policy; prints a summary line, or the failure, reproducer and shrunk list. */
function fuzzPolicy(settings: Settings, policy: PolicyName, replayOps: FuzzOp[] | null): boolean {
  const config: RunConfig = {
    policy,
    paths: settings.paths,
    checkEvery: settings.checkEvery,
    thorough: settings.thorough,
    debug: settings.debug,
    inject: settings.injectLive === undefined ? undefined : injectAtLive(settings.injectLive),
  };
  const label = `${policy} ${settings.paths.join("+")}`;
  const started = performance.now();
  const ops = replayOps ?? take(settings.seed, settings.ops, label);
  const result = runOps(ops, config);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  if (result.failure === null) {
    console.log(
      `fuzz ${label}: seed ${settings.seed}, ${result.opsRun} ops, ${result.heapCalls} allocator calls, 0 failures, ${seconds} s${
        result.nativeSkippedEpochs > 0
          ? ` (${result.nativeSkippedEpochs} epochs TS only: control block outside the window)`
          : ""
      }`,
    );
    return true;
  }
  const { index, message } = result.failure;
  console.log(`fuzz ${label}: FAILED at op ${index} after ${seconds} s: ${message}`);
  const reproducer = replayOps === null
    ? `deno task fuzz --seed ${settings.seed} --ops ${index + 1} ${flagsOf(settings, policy)}`
    : `deno task fuzz --replay ${settings.replay} ${flagsOf(settings, policy)}`;
  console.log(`${reproducer} # fails at op ${index}`);
  const epoch = replayOps === null ? epochOf(settings.seed, index) : replayOps.slice(0, index + 1);
  // Two passes: with the run's own check interval while candidates are long (check() is
  // O(heap), so checking every operation of a long epoch makes each trial slow), then with
  // check() after every operation, so the final list fails where it is checked.
  const shrinkConfig = { ...config, checkEvery: 1 };
  const halfBudget = { trialsMax: 5_000, millisecondsMax: settings.shrinkSeconds * 500 };
  const coarse = shrinkOps(epoch, (candidate) => runOps(candidate, config).failure !== null, {
    ...halfBudget,
  });
  const fine = shrinkOps(
    coarse.ops,
    (candidate) => runOps(candidate, shrinkConfig).failure !== null,
    halfBudget,
  );
  const shrunk = { ...fine, trials: coarse.trials + fine.trials };
  const last = runOps(shrunk.ops, shrinkConfig).failure;
  console.log(
    `# shrunk from ${epoch.length} to ${shrunk.ops.length} operations in ${shrunk.trials} trials${
      shrunk.minimal ? " (1-minimal)" : " (budget spent)"
    }; replay with --replay FILE; it fails with: ${last?.message}`,
  );
  for (const op of shrunk.ops) console.log(formatOp(op));
  return false;
}

/**
 * Runs the fuzzer.
 *
 * @param args The command-line arguments.
 * @returns The exit code: 0 no failure (or `--help`), 1 a failure, 2 a usage error or missing native library.
 *
 * @example A usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./fuzz.ts";
 *
 * const error = console.error;
 * console.error = () => {};
 * assert.equal(await main(["--ops", "many"]), 2);
 * console.error = error;
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let settings: Settings;
  try {
    settings = parseSettings(args);
  } catch (error) {
    console.error(`fuzz: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  if (settings.paths.includes("native")) {
    try {
      loadNative(true);
    } catch (error) {
      // The loader's message says why: no --allow-ffi, or not built (and the fix).
      console.error(`fuzz: ${(error as Error).message}; or pass --path ts`);
      return 2;
    }
  }
  const replayOps = settings.replay === undefined
    ? null
    : parseOps(await Deno.readTextFile(settings.replay));
  let ok = true;
  for (const policy of settings.policies) {
    try {
      ok = fuzzPolicy(settings, policy, replayOps) && ok;
    } catch (error) {
      console.error(`fuzz: ${(error as Error).message}`);
      return 2;
    }
    if (!ok) break;
  }
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
