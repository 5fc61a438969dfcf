/**
 * The trace tools' command line:
 *
 * ```text
 * deno run -A tools/trace/main.ts capture --out T.rep [--children] -- PROGRAM ARGS...
 * deno run -A tools/trace/main.ts replay [--policy tlsf|first-fit|all] [--native]
 *     [--backend buffer|identity] [--heap-bytes N] TRACE|DIR...
 * deno run -A tools/trace/main.ts score [--policies tlsf,first-fit] [--paths ts,native,blocks]
 *     [--backend buffer,identity] [--peers auto|none|thing,glibc,mimalloc,rlsf,talc]
 *     [--json] [--json-out PATH] [--svg PATH] [--budget-ms N] [--heap-bytes N] [--quiet]
 *     TRACE|DIR...
 * ```
 *
 * `main.ts --help` lists the commands; `main.ts COMMAND --help` describes
 * every flag of one. Help needs no permissions: the npm peer
 * (`@thi.ng/malloc`) is imported only when a scoreboard uses it.
 *
 * `--peers auto` (the default) is `@thi.ng/malloc`, glibc, mimalloc when
 * `libmimalloc.so.2` is installed, and rlsf and talc when cargo can build
 * `tools/trace/peers/` (otherwise a one-line note says they are skipped).
 *
 * Exit codes: 0 success, 1 a trace could not be read or a replay failed
 * verification (a corrupted payload, a broken heap), 2 a usage error.
 * Performance goals that fall short are reported, never an exit code.
 *
 * @module
 */

import { parseArgs } from "#cli";
import { isPolicyName, POLICY_NAMES, type PolicyName } from "../../mod.ts";
import { CAPTURE_USAGE, captureMain } from "./capture.ts";
import { type DecodedTrace, decodeTrace } from "./decode.ts";
import { progressBar } from "./progress.ts";
import { parseRep } from "./rep_format.ts";
import { heapBytesFor, verifyReplay } from "./replay.ts";
import type { ReplayTarget } from "./replay_heap.ts";
import { formatGoals, formatSvg, formatTable } from "./report.ts";
import { evaluateGoals, scoreTraces } from "./score.ts";
import { type BackendName, physicalTarget } from "./target_physical.ts";
import { buildRustPeers, RUST_PEERS, rustTarget } from "./rust_peers.ts";
import { glibcTarget, libraryOpens, mimallocTarget } from "./target_ffi.ts";

const USAGE = `usage: deno run -A tools/trace/main.ts COMMAND [OPTIONS]

Commands:
  capture   record a program's allocations under valgrind into a .rep trace
  replay    replay traces on the project's allocator, verifying every payload
  score     the scoreboard: every trace on every policy and peer, verified and timed

Run \`main.ts COMMAND --help\` for the options of one command.`;

const REPLAY_USAGE = `usage: main.ts replay [OPTIONS] TRACE|DIR...

Replays each trace (a .rep file, or every .rep in a folder) once, checked:
payload patterns, check() and utilization.

  --policy P        tlsf, first-fit or all (default tlsf)
  --native          require the native (Zig) path (needs --allow-ffi and the built library)
  --backend B       buffer (an ArrayBuffer) or identity (mmap at the physical address)
                    (default buffer)
  --heap-bytes N    heap size for every trace (default 4 x peak live bytes + 64 bytes
                    per peak live block + 1 MiB)
  -h, --help        print this help and exit`;

const SCORE_USAGE = `usage: main.ts score [OPTIONS] TRACE|DIR...

Replays every trace on every target, verified and then timed round robin on
warm memory, prints the table and the performance goals.

  --policies LIST   the project's policies: tlsf,first-fit (default tlsf,first-fit)
  --paths LIST      ts, native, blocks (ts with the page-frame and slab layers off),
                    comma-separated (default ts)
  --backend LIST    buffer, identity or buffer,identity (default buffer)
  --peers LIST      thing, glibc, mimalloc, rlsf, talc; auto (default: thing, glibc,
                    mimalloc if installed, rlsf and talc if cargo builds them) or none
  --json            print the report as JSON instead of the table
  --json-out PATH   also write the JSON report to PATH
  --svg PATH        also write the scoreboard picture to PATH
  --budget-ms N     time budget per trace and target in ms (default 3000)
  --heap-bytes N    heap size for every trace (default as for replay)
  --quiet           no progress bar
  -h, --help        print this help and exit`;

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
  const names = value === "all" ? [...POLICY_NAMES] : value.split(",");
  return names.map((name) => {
    if (!isPolicyName(name)) {
      throw new UsageError(
        `unknown policy '${name}', expected ${POLICY_NAMES.join(", ")} or all`,
      );
    }
    return name;
  });
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

async function scoreTargets(values: {
  policies: string;
  paths: string;
  backend: string;
  peers: string;
}): Promise<ReplayTarget[]> {
  const backends = values.backend.split(",").map(backendOf);
  const targets: ReplayTarget[] = [];
  for (const path of values.paths.split(",")) {
    if (path !== "ts" && path !== "native" && path !== "blocks") {
      throw new UsageError(`unknown path '${path}', expected ts, native or blocks`);
    }
    for (const policy of policiesOf(values.policies)) {
      // "blocks": the TS path with the page-frame and slab layers off.
      const layers = path !== "blocks";
      // Backends side by side in one run: their ratio is only meaningful timed round robin.
      for (const backend of backends) {
        targets.push(physicalTarget({ policy, native: path === "native", backend, layers }));
      }
    }
  }
  const peers = values.peers === "none"
    ? []
    : values.peers === "auto"
    ? ["thing", "glibc", ...(libraryOpens("libmimalloc.so.2") ? ["mimalloc"] : []), ...RUST_PEERS]
    : values.peers.split(",");
  const known = ["thing", "glibc", "mimalloc", ...RUST_PEERS];
  const unknown = peers.find((peer) => !known.includes(peer));
  if (unknown !== undefined) {
    throw new UsageError(`unknown peer '${unknown}', expected ${known.join(", ")}, auto or none`);
  }
  const rustLibrary = peers.some((peer) => (RUST_PEERS as readonly string[]).includes(peer))
    ? buildRustPeers()
    : null;
  for (const peer of peers) {
    if (peer === "thing") targets.push((await import("./target_thing.ts")).thingTarget());
    else if (peer === "glibc") targets.push(glibcTarget());
    else if (peer === "mimalloc") targets.push(mimallocTarget());
    // Without cargo, buildRustPeers has printed the one-line note; the run goes on without them.
    else if (rustLibrary !== null) targets.push(rustTarget(peer as "rlsf", rustLibrary));
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
  const targets = await scoreTargets(values);
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
 * @returns The exit code: 0 success (or help), 1 a failed replay or unreadable trace, 2 a
 *   usage error (including no command at all, which prints the usage).
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
  // flags after `--`): each subcommand prints its own help.
  const own = rest.includes("--") ? rest.slice(0, rest.indexOf("--")) : rest;
  const help = own.includes("--help") || own.includes("-h");
  const usages: Record<string, string> = {
    capture: CAPTURE_USAGE,
    replay: REPLAY_USAGE,
    score: SCORE_USAGE,
  };
  if (command === undefined || command === "--help" || command === "-h") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (help && command in usages) {
    console.log(usages[command]);
    return 0;
  }
  try {
    if (command === "capture") return await captureMain(rest);
    if (command === "replay") return await replayMain(rest);
    if (command === "score") return await scoreMain(rest);
    throw new UsageError(`unknown command '${command}'`);
  } catch (error) {
    if (
      error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`${(error as Error).message}\n${usages[command] ?? USAGE}`);
      return 2;
    }
    console.error(`error: ${(error as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
