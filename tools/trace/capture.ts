/**
 * Capturing an allocation trace from any program: run it under
 * `valgrind --trace-malloc=yes`, convert the log with
 * {@linkcode convertValgrindLog}, and keep one process's stream.
 *
 * Valgrind writes one log per process (`--log-file=DIR/vg.%p.log`); with
 * `traceChildren` the children of a driver (for example `gcc` forking
 * `cc1`) are traced too, and by default the process with the most
 * operations is kept.
 *
 * Run as a script: `deno run --allow-run --allow-read --allow-write tools/trace/capture.ts
 * --out trace.rep -- python3 script.py` (the same as `main.ts capture`).
 *
 * @module
 */

import { parseArgs } from "#cli";
import { TraceFormatError } from "../../allocator/errors.ts";
import { formatRep, type RepTrace } from "./rep_format.ts";
import { convertValgrindLog, type ValgrindAnomalies } from "./valgrind_log.ts";

/** How to capture a trace. */
export interface CaptureOptions {
  /** The program and its arguments. */
  readonly command: readonly string[];
  /**
   * Also trace child processes (valgrind's `--trace-children=yes`).
   * @default {false}
   */
  readonly traceChildren?: boolean;
  /**
   * Which process's trace to keep: the one with the most operations, or a pid.
   * @default {"largest"}
   */
  readonly process?: "largest" | number;
  /**
   * The valgrind executable.
   * @default {"valgrind"}
   */
  readonly valgrindPath?: string;
  /** Working directory of the program. @default {the current directory} */
  readonly cwd?: string;
  /** A directory to keep valgrind's logs in (they are deleted otherwise). */
  readonly keepLogsDir?: string;
  /**
   * Where the program's stdout and stderr go.
   * @default {"null"}
   */
  readonly output?: "null" | "inherit";
}

/** A captured trace and where it came from. */
export interface CaptureResult {
  /** The kept process's trace. */
  readonly trace: RepTrace;
  /** The kept process's id. */
  readonly pid: number;
  /** Every traced process and its operation count. */
  readonly processes: readonly { pid: number; opCount: number }[];
  /** Log entries of the kept process that could not be paired and were skipped. */
  readonly anomalies: ValgrindAnomalies;
  /** The program's exit code under valgrind. */
  readonly exitCode: number;
}

/**
 * Runs a program under valgrind and returns its allocation trace.
 *
 * @param options The program and how to trace it.
 * @returns The trace of one process.
 * @throws {TraceFormatError} If no process made an allocation call, or the requested pid is
 *   not among the traced processes.
 *
 * @example Capturing `true` (which may allocate nothing)
 * ```ts ignore
 * import assert from "node:assert/strict";
 * import { captureTrace } from "./capture.ts";
 *
 * const result = await captureTrace({ command: ["ls", "/"] });
 * assert.ok(result.trace.opCount > 0);
 * ```
 */
export async function captureTrace(options: CaptureOptions): Promise<CaptureResult> {
  if (options.command.length === 0) {
    throw new TraceFormatError("Cannot capture a trace: no command given");
  }
  const logDir = options.keepLogsDir ?? await Deno.makeTempDir({ prefix: "trace_capture_" });
  await Deno.mkdir(logDir, { recursive: true });
  try {
    const args = [
      "--trace-malloc=yes",
      `--log-file=${logDir}/vg.%p.log`,
      "--undef-value-errors=no",
      "--leak-check=no",
      `--trace-children=${options.traceChildren ? "yes" : "no"}`,
      ...options.command,
    ];
    const output = options.output ?? "null";
    const child = new Deno.Command(options.valgrindPath ?? "valgrind", {
      args,
      cwd: options.cwd,
      stdin: "null",
      stdout: output,
      stderr: output,
    }).spawn();
    const status = await child.status;
    const conversions = [];
    for await (const entry of Deno.readDir(logDir)) {
      if (!entry.isFile || !/^vg\.\d+\.log$/.test(entry.name)) continue;
      conversions.push(...convertValgrindLog(await Deno.readTextFile(`${logDir}/${entry.name}`)));
    }
    return pickProcess(conversions, options.process ?? "largest", status.code);
  } finally {
    if (options.keepLogsDir === undefined) await Deno.remove(logDir, { recursive: true });
  }
}

function pickProcess(
  conversions: ReturnType<typeof convertValgrindLog>,
  wanted: "largest" | number,
  exitCode: number,
): CaptureResult {
  if (conversions.length === 0) {
    throw new TraceFormatError(
      `Cannot capture a trace: no traced process made an allocation call (exit code ${exitCode})`,
    );
  }
  const processes = conversions.map((c) => ({ pid: c.pid, opCount: c.trace.opCount }));
  const chosen = wanted === "largest"
    ? conversions.reduce((a, b) => (b.trace.opCount > a.trace.opCount ? b : a))
    : conversions.find((c) => c.pid === wanted);
  if (chosen === undefined) {
    throw new TraceFormatError(
      `Cannot capture a trace of pid ${wanted}: the traced pids are ${
        processes.map((p) => p.pid).join(", ")
      }`,
    );
  }
  return { trace: chosen.trace, pid: chosen.pid, processes, anomalies: chosen.anomalies, exitCode };
}

/**
 * The `capture` command line: `capture --out FILE [--children] [--pid N] [--from-log LOG]
 * [--keep-logs DIR] [--show-output] -- PROGRAM ARGS...`. With `--from-log`, an
 * existing valgrind log is converted instead of running a program.
 *
 * @param args The arguments after `capture`.
 * @returns The process exit code: 0 on success, 1 on a failure, 2 on a usage error.
 *
 * @example A usage error
 * ```ts
 * import assert from "node:assert/strict";
 * import { captureMain } from "./capture.ts";
 *
 * assert.equal(await captureMain(["--no-such-flag"]), 2);
 * ```
 */
export async function captureMain(args: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        out: { type: "string", short: "o" },
        children: { type: "boolean", default: false },
        pid: { type: "string" },
        "from-log": { type: "string" },
        "keep-logs": { type: "string" },
        "show-output": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    console.error(`capture: ${(error as Error).message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(CAPTURE_USAGE);
    return 0;
  }
  if (
    values.out === undefined || (positionals.length === 0) === (values["from-log"] === undefined)
  ) {
    console.error(`capture: give --out and either a command or --from-log\n${CAPTURE_USAGE}`);
    return 2;
  }
  try {
    const process = values.pid === undefined ? "largest" : Number(values.pid);
    const result = values["from-log"] !== undefined
      ? pickProcess(convertValgrindLog(await Deno.readTextFile(values["from-log"])), process, 0)
      : await captureTrace({
        command: positionals,
        traceChildren: values.children,
        process,
        keepLogsDir: values["keep-logs"],
        output: values["show-output"] ? "inherit" : "null",
      });
    await Deno.writeTextFile(values.out, formatRep(result.trace));
    console.error(
      `capture: wrote ${values.out}: ${result.trace.opCount} operations, ${result.trace.idCount} ids, pid ${result.pid} of ${result.processes.length} process(es), exit code ${result.exitCode}, skipped ${
        JSON.stringify(result.anomalies)
      }`,
    );
    return 0;
  } catch (error) {
    console.error(`capture: ${(error as Error).message}`);
    return 1;
  }
}

/**
 * The `capture` command's help: every flag.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CAPTURE_USAGE } from "./capture.ts";
 *
 * assert.match(CAPTURE_USAGE, /--from-log/);
 * ```
 */
export const CAPTURE_USAGE =
  `usage: capture --out FILE [--children] [--pid N] [--keep-logs DIR] [--show-output] -- PROGRAM ARGS...
       capture --out FILE [--pid N] --from-log VALGRIND_LOG

Runs PROGRAM under \`valgrind --trace-malloc=yes\` and writes one process's
allocations as a .rep trace (needs valgrind on PATH).

  -o, --out FILE       the .rep file to write (required)
  --children           trace child processes too (valgrind --trace-children=yes)
  --pid N              keep process N (default: the traced process with the most operations)
  --keep-logs DIR      keep valgrind's per-process logs in DIR (default: a temporary folder,
                       removed afterwards)
  --show-output        show the program's own output (default: discarded)
  --from-log LOG       convert an existing valgrind log instead of running a program
  -h, --help           print this help and exit`;

if (import.meta.main) Deno.exit(await captureMain(Deno.args));
