import assert from "#assert";
import { formatSvg, wrapWords } from "../tools/trace/report.ts";
import type { ScoreRow } from "../tools/trace/score.ts";

function row(target: string, utilization: number, error?: string): ScoreRow {
  return {
    trace: "git",
    opCount: 100,
    target,
    own: target === "tlsf",
    heapBytes: 1 << 20,
    opsPerSecond: 1e6,
    spread: 0.01,
    repetitions: 5,
    utilization,
    peakLiveBytes: 90,
    peakFootprintBytes: Number.isNaN(utilization) ? NaN : 100,
    failedRequests: 0,
    headerOverheadBytes: 8,
    ...(error === undefined ? {} : { error }),
  };
}

Deno.test("formatSvg() wraps a long title to the picture's width", () => {
  const title =
    "deno run -A tools/trace/main.ts score --paths ts,native --budget-ms 4000 --json-out bench/traces/scoreboard.json --svg bench/traces/scoreboard.svg bench/traces (2026-12-02T16:00:00.000Z)";
  const svg = formatSvg([row("tlsf", 0.9), row("glibc", NaN)], title);
  const width = Number(/<svg [^>]*width="(\d+)"/.exec(svg)![1]);
  const lines = [...svg.matchAll(/<text x="10" y="\d+" font-size="12">([^<]*)<\/text>/g)].map((
    m,
  ) => m[1]);
  assert.ok(lines.length >= 2, `${lines.length} title lines`);
  assert.equal(lines.join(" "), title);
  for (const line of lines) {
    assert.ok(10 + line.length * 7 <= width, `"${line}" exceeds ${width}px`);
  }
});

Deno.test("formatSvg() says n/a where a peer has no utilization figure", () => {
  const svg = formatSvg([row("tlsf", 0.9), row("glibc", NaN), row("broken", NaN, "boom")], "t");
  assert.equal(svg.match(/>n\/a<title>git glibc: not measurable<\/title>/g)?.length, 1);
  // A failed row gets its red cross, not "n/a".
  assert.ok(!svg.includes("git broken: not measurable"));
  assert.match(svg, /✗<title>boom<\/title>/);
});

Deno.test("wrapWords() keeps every word and respects the width", () => {
  assert.deepEqual(wrapWords("a bb ccc dddd", 6), ["a bb", "ccc", "dddd"]);
  assert.deepEqual(wrapWords("averyveryverylongword x", 5), ["averyveryverylongword", "x"]);
  assert.deepEqual(wrapWords("", 5), [""]);
});
