/**
 * The trace tools' command line:
 *
 * ```text
 * deno run -A tools/trace/main.ts capture --out T.rep [--children] -- PROGRAM ARGS...
 * deno run -A tools/trace/main.ts replay [--policy tlsf|first-fit|all] [--native]
 *     [--backend buffer|identity] [--heap-bytes N] TRACE|DIR...
 * deno run -A tools/trace/main.ts score [--policies tlsf,first-fit] [--paths ts,native,blocks]
 *     [--backend buffer|identity] [--peers auto|none|thing,glibc,mimalloc]
 *     [--json] [--json-out PATH] [--svg PATH] [--budget-ms N] [--heap-bytes N] [--quiet]
 *     TRACE|DIR...
 * ```
 *
 * `--peers auto` (the default) is `@thi.ng/malloc`, glibc, and mimalloc when
 * `libmimalloc.so.2` is installed.
 *
 * Exit codes: 0 success, 1 a trace could not be read or a replay failed
 * verification (a corrupted payload, a broken heap), 2 a usage error.
 * Performance goals that fall short are reported, never an exit code.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { PolicyName } from "../../allocator/policy.ts";
import { captureMain } from "./capture.ts";
import { type DecodedTrace, decodeTrace } from "./decode.ts";
import { progressBar } from "./progress.ts";
import { parseRep } from "./rep_format.ts";
import { heapBytesFor, verifyReplay } from "./replay.ts";
import type { ReplayTarget } from "./replay_heap.ts";
import { formatGoals, formatSvg, formatTable } from "./report.ts";
import { evaluateGoals, scoreTraces } from "./score.ts";
import { type BackendName, physicalTarget } from "./target_physical.ts";
import { glibcTarget, mimallocTarget } from "./target_ffi.ts";
import { thingTarget } from "./target_thing.ts";

const USAGE = `usage: main.ts capture --out FILE [--children] [--pid N] -- PROGRAM ARGS...
       main.ts replay [--policy tlsf|first-fit|all] [--native] [--backend buffer|identity]
                      [--heap-bytes N] TRACE|DIR...
       main.ts score [--policies tlsf,first-fit] [--paths ts,native,blocks] [--backend buffer|identity]
                     [--peers auto|none|thing,glibc,mimalloc] [--json] [--json-out PATH]
                     [--svg PATH] [--budget-ms N] [--heap-bytes N] [--quiet] TRACE|DIR...`;

/** A command-line mistake: reported with the usage, exit code 2. */
class UsageError extends Error {}

/**
 * Reads `.rep` files (and every `.rep` in directories, sorted by name) and decodes them.
 *
 * @param paths Files or directories.
 * @returns The decoded traces, named by file name without `.rep`.
 * @throws {TraceFormatError} If a trace is malformed.
 *
 * @example Loading a directory of traces
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadTraces } from "./main.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/tiny.rep`, "0\n1\n2\n1\na 0 8\nf 0\n");
 * const [trace] = await loadTraces([dir]);
 * assert.equal(trace.name, "tiny");
 * assert.equal(trace.opCount, 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadTraces(paths: readonly string[]): Promise<DecodedTrace[]> {
  const files: string[] = [];
  for (const path of paths) {
    if ((await Deno.stat(path)).isDirectory) {
      const names: string[] = [];
      for await (const entry of Deno.readDir(path)) {
        if (entry.isFile && entry.name.endsWith(".rep")) names.push(`${path}/${entry.name}`);
      }
      files.push(...names.sort());
    } else {
      files.push(path);
    }
  }
  const traces: DecodedTrace[] = [];
  for (const file of files) {
    const name = file.replace(/^.*\//, "").replace(/\.rep$/, "");
    traces.push(decodeTrace(parseRep(await Deno.readTextFile(file)), name));
  }
  return traces;
}

function policiesOf(value: string): PolicyName[] {
  const names = value === "all" ? ["tlsf", "first-fit"] : value.split(",");
  for (const name of names) {
    if (name !== "tlsf" && name !== "first-fit") {
      throw new UsageError(`unknown policy '${name}', expected tlsf, first-fit or all`);
    }
  }
  return names as PolicyName[];
}

function backendOf(value: string): BackendName {
  if (value !== "buffer" && value !== "identity") {
    throw new UsageError(`unknown backend '${value}', expected buffer or identity`);
  }
  return value;
}

function positiveOf(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number <= 0) {
    throw new UsageError(`--${name} must be a positive integer, found '${value}'`);
  }
  return number;
}

async function replayMain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      policy: { type: "string", default: "tlsf" },
      native: { type: "boolean", default: false },
      backend: { type: "string", default: "buffer" },
      "heap-bytes": { type: "string" },
    },
  });
  if (positionals.length === 0) throw new UsageError("replay needs at least one trace");
  const backend = backendOf(values.backend);
  const heapBytes = positiveOf(values["heap-bytes"], "heap-bytes");
  const targets = policiesOf(values.policy).map((policy) =>
    physicalTarget({ policy, native: values.native, backend })
  );
  const traces = await loadTraces(positionals);
  let failures = 0;
  for (const trace of traces) {
    for (const target of targets) {
      try {
        const result = verifyReplay(target, trace, heapBytes ?? heapBytesFor(trace));
        console.log(
          `${trace.name} on ${target.name}: verified ${trace.opCount} operations, ${result.failedRequests} failed requests, utilization ${
            (result.utilization * 100).toFixed(1)
          }%, check() passed${
            result.nativeActive
              ? ", native path active"
              : values.native
              ? ", NATIVE PATH NOT ACTIVE"
              : ""
          }`,
        );
      } catch (error) {
        failures++;
        console.log(`${trace.name} on ${target.name}: FAILED: ${(error as Error).message}`);
      }
    }
  }
  return failures === 0 ? 0 : 1;
}

/** True when the shared library at `path` can be loaded (it defines no symbols we need here). */
function libraryOpens(path: string): boolean {
  try {
    Deno.dlopen(path, {}).close();
    return true;
  } catch {
    return false;
  }
}

function scoreTargets(values: {
  policies: string;
  paths: string;
  backend: string;
  peers: string;
}): ReplayTarget[] {
  const backend = backendOf(values.backend);
  const targets: ReplayTarget[] = [];
  for (const path of values.paths.split(",")) {
    if (path !== "ts" && path !== "native" && path !== "blocks") {
      throw new UsageError(`unknown path '${path}', expected ts, native or blocks`);
    }
    for (const policy of policiesOf(values.policies)) {
      // "blocks": the TS path with the page-frame and slab layers off.
      const layers = path !== "blocks";
      targets.push(physicalTarget({ policy, native: path === "native", backend, layers }));
    }
  }
  const peers = values.peers === "none"
    ? []
    : values.peers === "auto"
    ? ["thing", "glibc", ...(libraryOpens("libmimalloc.so.2") ? ["mimalloc"] : [])]
    : values.peers.split(",");
  for (const peer of peers) {
    if (peer === "thing") targets.push(thingTarget());
    else if (peer === "glibc") targets.push(glibcTarget());
    else if (peer === "mimalloc") targets.push(mimallocTarget());
    else {
      throw new UsageError(`unknown peer '${peer}', expected thing, glibc, mimalloc, auto or none`);
    }
  }
  return targets;
}

async function scoreMain(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      policies: { type: "string", default: "tlsf,first-fit" },
      paths: { type: "string", default: "ts" },
      backend: { type: "string", default: "buffer" },
      peers: { type: "string", default: "auto" },
      json: { type: "boolean", default: false },
      "json-out": { type: "string" },
      svg: { type: "string" },
      "budget-ms": { type: "string" },
      "heap-bytes": { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  if (positionals.length === 0) throw new UsageError("score needs at least one trace");
  const targets = scoreTargets(values);
  const budgetMs = positiveOf(values["budget-ms"], "budget-ms");
  const heapBytes = positiveOf(values["heap-bytes"], "heap-bytes");
  const traces = await loadTraces(positionals);
  const rows = scoreTraces(traces, targets, {
    time: budgetMs === undefined ? undefined : { budgetMs },
    heapBytes,
    onProgress: values.quiet ? undefined : progressBar(),
  });
  const ownDefault = targets.find((t) => t.own)?.name ?? "tlsf";
  const goals = evaluateGoals(rows, ownDefault);
  const command = `deno run -A tools/trace/main.ts score ${args.join(" ")}`;
  const report = { command, date: new Date().toISOString(), deno: Deno.version.deno, rows, goals };
  const json = JSON.stringify(
    report,
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v),
    2,
  );
  if (values["json-out"] !== undefined) await Deno.writeTextFile(values["json-out"], json + "\n");
  if (values.json) {
    console.log(json);
  } else {
    console.log(formatTable(rows));
    console.log(formatGoals(goals));
  }
  if (values.svg !== undefined) {
    await Deno.writeTextFile(
      values.svg,
      formatSvg(rows, `${command} (${new Date().toISOString()})`),
    );
  }
  return rows.some((row) => row.error !== undefined) ? 1 : 0;
}

/**
 * Runs the command line.
 *
 * @param args The arguments: a subcommand and its options.
 * @returns The exit code: 0 success, 1 a failed replay or unreadable trace, 2 a usage error.
 *
 * @example A usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { main } from "./main.ts";
 *
 * assert.equal(await main(["no-such-command"]), 2);
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  // `main.ts score --help` and the like (but not a captured program's own
  // flags after `--`): every subcommand's flags are in USAGE.
  const own = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
  if (own.includes("--help") || own.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  try {
    if (command === "capture") return await captureMain(rest);
    if (command === "replay") return await replayMain(rest);
    if (command === "score") return await scoreMain(rest);
    if (command === "--help" || command === "-h") {
      console.log(USAGE);
      return 0;
    }
    throw new UsageError(`unknown command '${command ?? ""}'`);
  } catch (error) {
    if (
      error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`${(error as Error).message}\n${USAGE}`);
      return 2;
    }
    console.error(`error: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
