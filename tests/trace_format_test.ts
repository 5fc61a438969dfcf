import assert from "#assert";
import { TraceFormatError } from "../allocator/errors.ts";
import {
  decodeTrace,
  REPLAY_ALLOC,
  REPLAY_FREE,
  REPLAY_NOOP,
  REPLAY_REALLOC,
} from "../tools/trace/decode.ts";
import {
  formatRep,
  OP_ALLOC,
  OP_FREE,
  OP_REALLOC,
  parseRep,
  TraceBuilder,
} from "../tools/trace/rep_format.ts";
import { convertValgrindLog } from "../tools/trace/valgrind_log.ts";

function assertTraceError(text: string, pattern: RegExp): void {
  assert.throws(
    () => decodeTrace(parseRep(text), "test"),
    (error) =>
      error instanceof TraceFormatError && error.code === "TRACE_INVALID" &&
      pattern.test(error.message),
  );
}

Deno.test("parseRep() reads the header and the three operation kinds", () => {
  const trace = parseRep("1000\n2\n4\n1\na 0 16\na 1 32\nr 0 64\nf 1\n");
  assert.equal(trace.suggestedHeapBytes, 1000);
  assert.equal(trace.idCount, 2);
  assert.equal(trace.opCount, 4);
  assert.equal(trace.weight, 1);
  assert.deepEqual([...trace.kinds], [OP_ALLOC, OP_ALLOC, OP_REALLOC, OP_FREE]);
  assert.deepEqual([...trace.ids], [0, 1, 0, 1]);
  assert.deepEqual([...trace.sizesBytes], [16, 32, 64, 0]);
  assert.deepEqual([...trace.lineNumbers], [5, 6, 7, 8]);
});

Deno.test("parseRep() accepts the quirks of real traces", async (t) => {
  await t.step("f -1 is a free of NULL, replayed as a no-op", () => {
    const decoded = decodeTrace(parseRep("0\n0\n1\n1\nf -1\n"), "t");
    assert.deepEqual([...decoded.kinds], [REPLAY_NOOP]);
  });
  await t.step("r of an id never allocated is a malloc", () => {
    const decoded = decodeTrace(parseRep("0\n1\n2\n1\nr 0 24\nf 0\n"), "t");
    assert.deepEqual([...decoded.kinds], [REPLAY_ALLOC, REPLAY_FREE]);
    assert.equal(decoded.sizesBytes[0], 24);
  });
  await t.step("r id 0 of a live id is a free", () => {
    const decoded = decodeTrace(parseRep("0\n1\n3\n1\na 0 8\nr 0 0\na 0 8\n"), "t");
    assert.deepEqual([...decoded.kinds], [REPLAY_ALLOC, REPLAY_FREE, REPLAY_ALLOC]);
  });
  await t.step("an a line with no size allocates 0 bytes", () => {
    const trace = parseRep("0\n1\n1\n1\na 0\n");
    assert.equal(trace.sizesBytes[0], 0);
  });
  await t.step("op lines past the header's count are ignored, even malformed ones", () => {
    const trace = parseRep("0\n1\n2\n1\na 0 8\nf 0\nf 0\nnot an op\n");
    assert.equal(trace.opCount, 2);
  });
  await t.step("ids past the header's id count, CRLF and blank lines are read", () => {
    const decoded = decodeTrace(
      parseRep("0\r\n1\r\n\r\n3\r\n1\r\na 5 8\r\nr 5 16\r\nf 5\r\n"),
      "t",
    );
    assert.deepEqual([...decoded.kinds], [REPLAY_ALLOC, REPLAY_REALLOC, REPLAY_FREE]);
    assert.equal(decoded.slotCount, 6);
    assert.equal(decoded.peakLiveBytes, 16);
  });
});

Deno.test("parseRep() names the line of every malformed input", async (t) => {
  const cases: [string, string, RegExp][] = [
    [
      "a header value that is not a number",
      "x\n1\n1\n1\na 0 1\n",
      /line 1: the suggested heap size/,
    ],
    ["a negative id count", "0\n-1\n1\n1\na 0 1\n", /line 2: the number of ids .* '-1'/],
    ["a missing header line", "0\n1\n", /before the number of operations header line/],
    ["an unknown operation", "0\n1\n1\n1\nx 0 1\n", /line 5: unknown operation 'x'/],
    ["a realloc without a size", "0\n1\n1\n1\nr 0\n", /line 5: 'r 0' has 2 fields/],
    ["a free with a size", "0\n1\n1\n1\nf 0 8\n", /line 5: 'f 0 8' has 3 fields/],
    [
      "a non-integer size",
      "0\n1\n1\n1\na 0 1.5\n",
      /line 5: the size must be an integer, found '1.5'/,
    ],
    ["a negative size", "0\n1\n1\n1\na 0 -8\n", /line 5: size -8 is negative/],
    ["an a with id -1", "0\n1\n1\n1\na -1 8\n", /line 5: id -1 is out of range for 'a'/],
    [
      "fewer operations than the header says",
      "0\n1\n3\n1\na 0 8\n",
      /after 1 operations, the header says 3/,
    ],
    [
      "a free of an id that is not live",
      "0\n1\n1\n1\nf 0\n",
      /line 5: 'f 0' frees an id that is not live/,
    ],
    [
      "an a of a live id",
      "0\n1\n2\n1\na 0 8\na 0 8\n",
      /line 6: 'a 0' allocates an id that is already live/,
    ],
  ];
  for (const [name, text, pattern] of cases) {
    await t.step(name, () => assertTraceError(text, pattern));
  }
});

Deno.test("formatRep() writes what parseRep() reads back unchanged", () => {
  const builder = new TraceBuilder();
  const a = builder.alloc(100);
  const b = builder.alloc(0);
  builder.realloc(a, 300);
  builder.free(-1);
  builder.free(b);
  builder.free(a);
  const trace = builder.build();
  const text = formatRep(trace);
  assert.equal(text, "300\n2\n6\n1\na 0 100\na 1 0\nr 0 300\nf -1\nf 1\nf 0\n");
  const again = parseRep(text);
  assert.equal(formatRep(again), text);
  assert.deepEqual([...again.kinds], [...trace.kinds]);
  assert.deepEqual([...again.sizesBytes], [...trace.sizesBytes]);
});

Deno.test("TraceBuilder.free() refuses an id that is not live", () => {
  const builder = new TraceBuilder();
  assert.throws(() => builder.free(3), { code: "TRACE_INVALID", message: /id 3: it is not live/ });
});

Deno.test("convertValgrindLog() converts a captured log into one trace per process", async () => {
  const log = await Deno.readTextFile(new URL("./fixtures/trace_valgrind.log", import.meta.url));
  const conversions = convertValgrindLog(log);
  assert.deepEqual(conversions.map((c) => c.pid), [3924, 3925]);
  const [cxx, ls] = conversions;
  const text = formatRep(cxx.trace);
  const lines = text.split("\n");
  // malloc, calloc(3,10) = 30 bytes, realloc keeps the id, memalign family.
  assert.deepEqual(lines.slice(4, 13), [
    "a 0 72704",
    "a 1 16",
    "a 2 30",
    "r 1 100",
    "a 3 7",
    "a 4 33",
    "a 5 20",
    "a 6 48",
    "a 7 10",
  ]);
  // realloc(p,0) prints free(p) and " = 0" on the next line: one free.
  assert.equal(lines[13], "f 3");
  assert.ok(text.includes("a 8 40\nf 8\n"), "operator new[] and delete[] are traced");
  assert.ok(text.includes("f -1\n"), "free(NULL) is kept as f -1");
  assert.deepEqual(cxx.anomalies, {
    unknownPointers: 0,
    reusedLiveAddresses: 0,
    unpaired: 0,
    failed: 0,
  });
  decodeTrace(cxx.trace, "cxx");
  // realloc(0x0,n) prints a nested malloc(n): one allocation.
  assert.equal(
    formatRep(ls.trace),
    "8216\n4\n7\n1\na 0 472\na 1 4096\na 2 1600\na 3 1024\nr 3 2048\nf 1\nf 0\n",
  );
  assert.equal(ls.anomalies.unknownPointers, 1);
  assert.equal(ls.anomalies.failed, 1);
});

Deno.test("convertValgrindLog() gives a reused address a new id", () => {
  const log = [
    "--1-- malloc(8) = 0x1000",
    "--1-- free(0x1000)",
    "--1-- malloc(16) = 0x1000",
    "--1-- malloc(24) = 0x1000",
  ].join("\n");
  const [process] = convertValgrindLog(log);
  assert.equal(formatRep(process.trace), "24\n3\n5\n1\na 0 8\nf 0\na 1 16\nf 1\na 2 24\n");
  assert.equal(process.anomalies.reusedLiveAddresses, 1);
});
