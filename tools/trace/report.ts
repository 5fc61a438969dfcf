/**
 * Presenting a scoreboard: a plain-text table, the goal checks, and an SVG
 * chart with two panels (throughput on a log scale, utilization).
 *
 * @module
 */

import type { GoalCheck, ScoreRow } from "./score.ts";

const COLUMNS = [
  "trace",
  "ops",
  "allocator",
  "Mops/s",
  "spread",
  "reps",
  "util",
  "footprint",
  "peak live",
  "failed",
  "header bytes",
] as const;

/**
 * Formats the scoreboard as an aligned text table, one line per trace and target.
 *
 * @param rows The scoreboard.
 * @returns The table, ending with a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatTable } from "./report.ts";
 *
 * const table = formatTable([{
 *   trace: "t", opCount: 2, target: "tlsf", own: true, heapBytes: 1, opsPerSecond: 2e6,
 *   spread: 0.01, repetitions: 5, utilization: 0.9, peakLiveBytes: 90, peakFootprintBytes: 100,
 *   failedRequests: 0, headerOverheadBytes: 16,
 * }]);
 * assert.match(table, /t +2 +tlsf +2\.00 +1\.0% +5 +90\.0%/);
 * ```
 */
export function formatTable(rows: readonly ScoreRow[]): string {
  const cells = rows.map((row) => [
    row.trace,
    String(row.opCount),
    row.target,
    Number.isNaN(row.opsPerSecond) ? "-" : (row.opsPerSecond / 1e6).toFixed(2),
    Number.isFinite(row.spread) ? `${(row.spread * 100).toFixed(1)}%` : "-",
    String(row.repetitions),
    Number.isNaN(row.utilization) ? "n/a" : `${(row.utilization * 100).toFixed(1)}%`,
    Number.isNaN(row.peakFootprintBytes) ? "n/a" : String(row.peakFootprintBytes),
    String(row.peakLiveBytes),
    Number.isNaN(row.failedRequests) ? "-" : String(row.failedRequests),
    Number.isNaN(row.headerOverheadBytes) ? "-" : String(row.headerOverheadBytes),
  ]);
  const widths = COLUMNS.map((name, i) => Math.max(name.length, ...cells.map((c) => c[i].length)));
  const line = (values: readonly string[]) =>
    values.map((v, i) => (i < 3 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join("  ")
      .trimEnd();
  const errors = rows.filter((row) => row.error !== undefined)
    .map((row) => `error: ${row.trace} on ${row.target}: ${row.error}`);
  return [line(COLUMNS), ...cells.map(line), ...errors].join("\n") + "\n";
}

/**
 * Formats goal checks as lines `MET|SHORT|N/A goal (trace): measured`.
 *
 * @param checks The checks from `evaluateGoals`.
 * @returns The lines, ending with a newline (empty when there are none).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatGoals } from "./report.ts";
 *
 * const text = formatGoals([{ goal: "g", trace: "t", measured: "ratio 1.00", met: false }]);
 * assert.equal(text, "SHORT  g (t): ratio 1.00\n");
 * ```
 */
export function formatGoals(checks: readonly GoalCheck[]): string {
  const verdict = (met: boolean | null) => (met === null ? "N/A  " : met ? "MET  " : "SHORT");
  return checks.map((c) => `${verdict(c.met)}  ${c.goal} (${c.trace}): ${c.measured}\n`)
    .join("");
}

const PALETTE = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];
/** Title lines are wrapped to the picture's width at this many pixels per character (12 px font). */
const TITLE_CHAR_PX = 7;
const TITLE_LINE_PX = 16;

/**
 * Draws the scoreboard as an SVG: per trace a group of bars, one per
 * target, for throughput (log scale) and for utilization. A target that
 * failed verification on a trace gets a red cross over its bar; a peer
 * whose blocks cannot be measured (glibc, mimalloc, rlsf, talc) says "n/a"
 * in place of its utilization bar. The title wraps to the picture's width.
 *
 * @param rows The scoreboard.
 * @param title The chart's title (for example the command and date).
 * @returns The SVG document.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatSvg } from "./report.ts";
 *
 * const svg = formatSvg([], "empty");
 * assert.ok(svg.startsWith("<svg"));
 * ```
 */
export function formatSvg(rows: readonly ScoreRow[], title: string): string {
  const traces = [...new Set(rows.map((r) => r.trace))];
  const targets = [...new Set(rows.map((r) => r.target))];
  const barWidth = 14;
  const groupWidth = Math.max(1, targets.length) * barWidth + 24;
  const left = 70;
  const width = left + Math.max(1, traces.length) * groupWidth + 180;
  const panelHeight = 220;
  const titleLines = wrapWords(title, Math.floor((width - 20) / TITLE_CHAR_PX));
  const shift = (titleLines.length - 1) * TITLE_LINE_PX;
  const height = 60 + 2 * (panelHeight + 50) + shift;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...titleLines.map((line, i) =>
      `<text x="10" y="${20 + i * TITLE_LINE_PX}" font-size="12">${escapeXml(line)}</text>`
    ),
    `<g transform="translate(0 ${shift})">`,
  ];
  const find = (trace: string, target: string) =>
    rows.find((r) => r.trace === trace && r.target === target);
  const ops = rows.map((r) => r.opsPerSecond).filter((v) => v > 0);
  const logMin = Math.floor(Math.log10(Math.min(...ops, 1e4)));
  const logMax = Math.ceil(Math.log10(Math.max(...ops, 1e5)));
  const panels = [
    {
      name: "Throughput (operations per second, log scale)",
      value: (r: ScoreRow) =>
        r.opsPerSecond > 0 ? (Math.log10(r.opsPerSecond) - logMin) / (logMax - logMin) : NaN,
      ticks: range(logMin, logMax).map((e) => ({
        at: (e - logMin) / (logMax - logMin),
        label: `1e${e}`,
      })),
    },
    {
      name: "Utilization (peak live bytes / peak footprint)",
      value: (r: ScoreRow) => r.utilization,
      ticks: [0, 0.25, 0.5, 0.75, 0.9, 1].map((v) => ({ at: v, label: `${v * 100}%` })),
    },
  ];
  panels.forEach((panel, p) => {
    const top = 50 + p * (panelHeight + 50);
    const bottom = top + panelHeight;
    parts.push(`<text x="${left}" y="${top - 8}" font-size="12">${panel.name}</text>`);
    for (const tick of panel.ticks) {
      const y = bottom - tick.at * panelHeight;
      parts.push(
        `<line x1="${left}" x2="${width - 180}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
        `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${tick.label}</text>`,
      );
    }
    traces.forEach((trace, t) => {
      const x0 = left + t * groupWidth + 12;
      targets.forEach((target, k) => {
        const row = find(trace, target);
        const v = row === undefined ? NaN : panel.value(row);
        if (row?.error !== undefined) {
          // A target that failed verification: a red cross over its bar.
          const h = Number.isFinite(v) ? Math.max(0, Math.min(1, v)) * panelHeight : 0;
          parts.push(
            `<text x="${x0 + k * barWidth + barWidth / 2 - 1}" y="${
              bottom - h - 3
            }" text-anchor="middle" fill="#d00" font-weight="bold">✗<title>${
              escapeXml(row.error)
            }</title></text>`,
          );
        }
        if (!Number.isFinite(v)) {
          if (row !== undefined && row.error === undefined) {
            // No figure to draw (a peer whose blocks cannot be seen): say so.
            const x = x0 + k * barWidth + barWidth / 2 + 3;
            parts.push(
              `<text x="${x}" y="${
                bottom - 4
              }" font-size="9" fill="#666" transform="rotate(-90 ${x} ${bottom - 4})">n/a<title>${
                escapeXml(`${trace} ${target}: not measurable`)
              }</title></text>`,
            );
          }
          return;
        }
        const h = Math.max(0, Math.min(1, v)) * panelHeight;
        parts.push(
          `<rect x="${x0 + k * barWidth}" y="${bottom - h}" width="${
            barWidth - 2
          }" height="${h}" fill="${PALETTE[k % PALETTE.length]}"><title>${
            escapeXml(`${trace} ${target}`)
          }</title></rect>`,
        );
      });
      parts.push(
        `<text x="${x0 + (targets.length * barWidth) / 2}" y="${
          bottom + 14
        }" text-anchor="middle">${escapeXml(trace)}</text>`,
      );
    });
  });
  if (rows.some((row) => row.error !== undefined)) {
    const y = 60 + targets.length * 18 + 8;
    parts.push(
      `<text x="${width - 170}" y="${y + 10}" fill="#d00">✗ failed verification</text>`,
    );
  }
  targets.forEach((target, k) => {
    const y = 60 + k * 18;
    const x = width - 170;
    parts.push(
      `<rect x="${x}" y="${y}" width="12" height="12" fill="${PALETTE[k % PALETTE.length]}"/>`,
      `<text x="${x + 18}" y="${y + 10}">${escapeXml(target)}</text>`,
    );
  });
  parts.push("</g>", "</svg>");
  return parts.join("\n") + "\n";
}

/**
 * Splits `text` into lines of at most `maxChars` characters at spaces (a
 * longer word gets a line of its own).
 *
 * @param text The text.
 * @param maxChars The most characters a line may have (at least 1).
 * @returns The lines, at least one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { wrapWords } from "./report.ts";
 *
 * assert.deepEqual(wrapWords("deno run -A main.ts score", 12), ["deno run -A", "main.ts", "score"]);
 * ```
 */
export function wrapWords(text: string, maxChars: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > maxChars) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  lines.push(line);
  return lines;
}

function range(from: number, to: number): number[] {
  const values: number[] = [];
  for (let v = from; v <= to; v++) values.push(v);
  return values;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
