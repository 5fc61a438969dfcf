/**
 * A progress bar on stderr for long replays: redrawn in place on a
 * terminal, one line per step otherwise (so logs stay readable).
 *
 * @module
 */

import type { ScoreProgress } from "./score.ts";

const BAR_WIDTH = 30;

/**
 * Makes a progress callback that writes to stderr.
 *
 * @param terminal Redraw in place (true) or write a line per step; defaults to whether stderr is a terminal.
 * @returns A callback for `scoreTraces`' `onProgress`.
 *
 * @example
 * ```ts
 * import { progressBar } from "./progress.ts";
 *
 * const onProgress = progressBar(false);
 * onProgress({ done: 1, total: 4, label: "git on tlsf: timing" });
 * ```
 */
export function progressBar(terminal = Deno.stderr.isTerminal()): (p: ScoreProgress) => void {
  const encoder = new TextEncoder();
  const started = performance.now();
  return ({ done, total, label }) => {
    const filled = total === 0 ? BAR_WIDTH : Math.round((done / total) * BAR_WIDTH);
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    const bar = `[${"#".repeat(filled)}${
      ".".repeat(BAR_WIDTH - filled)
    }] ${done}/${total} ${seconds}s ${label}`;
    const text = terminal ? `\r\x1b[K${bar}${done === total ? "\n" : ""}` : `${bar}\n`;
    Deno.stderr.writeSync(encoder.encode(text));
  };
}
