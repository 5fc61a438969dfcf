import assert from "#assert";
import { renderMemorySvg, renderMemoryTerminal } from "../tools/memory_picture.ts";
import { normalizeMemoryMap } from "../allocator/memory_map/normalize.ts";
import { sampleMemoryMap } from "../allocator/memory_map/samples.ts";

const GIB = 2 ** 30;
const ESC = "\x1b";

/**
 * A small XML well-formedness check: one root, every start tag closed in
 * order, quoted attributes, no stray `<` or `&` in text.
 */
function assertWellFormedXml(xml: string): void {
  const stack: string[] = [];
  let rootCount = 0;
  const token =
    /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(?:#\d+|amp|lt|gt|quot|apos);)/g;
  let match: RegExpExecArray | null;
  while ((match = token.exec(xml)) !== null) {
    if (match[2] === undefined) assert.fail(`Stray "${match[0]}" at offset ${match.index}`);
    const [, closing, name, , selfClosing] = match;
    if (closing) {
      assert.equal(
        stack.pop(),
        name,
        `</${name}> at offset ${match.index} closes the wrong element`,
      );
    } else {
      if (stack.length === 0) rootCount++;
      if (!selfClosing) stack.push(name);
    }
  }
  assert.deepEqual(stack, [], "every element is closed");
  assert.equal(rootCount, 1, "one root element");
}

const REGIONS = [
  { start: 0x1000, end: 0x9f000, type: "usable" },
  { start: 0x9fc00, end: 0x100000, type: "reserved" },
  { start: 0x100000, end: 0xc0000000, type: "usable", note: "identity" },
  { start: 0xeec00000, end: 0xfec00000, type: "reserved" },
  {
    start: 0x100000000,
    end: 0x100000000 + 16 * GIB,
    type: "usable",
    note: "relocated +0x200000 <&>",
  },
];

Deno.test("renderMemorySvg() draws well-formed SVG with one rect per region", () => {
  const svg = renderMemorySvg({
    regions: REGIONS,
    blocks: [
      { address: 0x100000, sizeBytes: 4096, free: false },
      { address: 0x101000, sizeBytes: 0xc0000000 - 0x101000, free: true },
    ],
    title: "Test & <title>",
  });
  assertWellFormedXml(svg);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert.equal(svg.match(/class="region /g)?.length, REGIONS.length);
  assert.equal(svg.match(/class="region usable"/g)?.length, 3);
  assert.equal(svg.match(/class="region reserved"/g)?.length, 2);
  assert.equal(svg.match(/class="block used"/g)?.length, 1);
  assert.equal(svg.match(/class="block free"/g)?.length, 1);
  assert.match(svg, /Test &#38; &#60;title&#62;/);
});

Deno.test("renderMemorySvg() makes a 4 KiB block visible next to a 16 GiB region", () => {
  const svg = renderMemorySvg({
    regions: [{ start: 0x100000000, end: 0x100000000 + 16 * GIB, type: "usable" }],
    blocks: [{ address: 0x100000000, sizeBytes: 4096, free: false }],
  }, { widthPx: 1000 });
  const used = /class="block used" x="[\d.]+" y="\d+" width="([\d.]+)"/.exec(svg);
  const region = /class="region usable" x="[\d.]+" y="\d+" width="([\d.]+)"/.exec(svg);
  assert.ok(used && region);
  assert.ok(Number(used[1]) >= 20, `4 KiB block is ${used[1]} px wide`);
  assert.ok(Number(used[1]) < Number(region[1]) / 10, "but still much narrower than 16 GiB");
});

Deno.test("renderMemorySvg() merges block runs past blockRectsMax and keeps the SVG valid", () => {
  const { resolved } = normalizeMemoryMap(sampleMemoryMap("fragmented"));
  const base = 0x100000000;
  const blocks = Array.from({ length: 5000 }, (_, i) => ({
    address: base + i * 64,
    sizeBytes: 64,
    free: i % 100 >= 50,
  }));
  const svg = renderMemorySvg({ regions: resolved, blocks }, { blockRectsMax: 1000 });
  assertWellFormedXml(svg);
  assert.equal(svg.match(/class="region /g)?.length, resolved.length);
  assert.equal(svg.match(/class="block /g)?.length, 100, "50-block runs merged");
});

Deno.test("renderMemorySvg() draws an empty map without failing", () => {
  const svg = renderMemorySvg({ regions: [] });
  assertWellFormedXml(svg);
  assert.equal(svg.match(/class="region /g), null);
});

Deno.test("renderMemoryTerminal() fits the width and shows used, free and reserved", () => {
  const text = renderMemoryTerminal({
    regions: REGIONS,
    blocks: [
      { address: 0x100000, sizeBytes: 0x100000, free: false },
      { address: 0x200000, sizeBytes: 0xc0000000 - 0x200000, free: true },
    ],
  }, { color: false, widthColumns: 72 });
  const lines = text.trimEnd().split("\n");
  assert.equal(lines.length, 3 + REGIONS.length);
  assert.ok(lines.every((line) => line.length <= 72), lines.map((l) => l.length).join(","));
  assert.match(lines[1], /█/);
  assert.match(lines[1], /░/);
  assert.match(lines[1], /▓/);
  assert.match(lines[1], /┊/, "holes are marked");
  assert.ok(!text.includes(ESC), "no escapes without colour");
  assert.match(lines[5], /0x100000 +3 GiB usable +█+░+$/);
});

Deno.test("renderMemoryTerminal() colours with ANSI escapes and caps region lines", () => {
  const { resolved } = normalizeMemoryMap(sampleMemoryMap("fragmented"));
  const text = renderMemoryTerminal({ regions: resolved }, { regionLinesMax: 5 });
  assert.ok(text.includes(`${ESC}[36m`), "usable colour");
  assert.ok(text.includes(`${ESC}[0m`), "reset");
  assert.match(text, new RegExp(`… ${resolved.length - 5} more regions`));
});

/** The x positions of the SVG's region labels (rotated text under the regions). */
function labelXs(svg: string): number[] {
  return [...svg.matchAll(/<text x="([\d.]+)" y="\d+" transform="rotate\(45 /g)].map((m) =>
    Number(m[1])
  );
}

Deno.test("renderMemorySvg() thins labels on the fragmented map so none overprints another", () => {
  const { resolved } = normalizeMemoryMap(sampleMemoryMap("fragmented"));
  for (const axis of ["log", "linear"] as const) {
    const svg = renderMemorySvg({ regions: resolved }, { axis });
    assertWellFormedXml(svg);
    const xs = labelXs(svg).sort((a, b) => a - b);
    assert.ok(xs.length >= 10 && xs.length < resolved.length, `${axis}: ${xs.length} labels`);
    for (let i = 1; i < xs.length; i++) {
      assert.ok(xs[i] - xs[i - 1] >= 16, `${axis}: labels at ${xs[i - 1]} and ${xs[i]} overlap`);
    }
    // Every region keeps its range in a tooltip, and the picture says how many are labelled.
    assert.equal(svg.match(/class="region [a-z]+"[^>]*><title>/g)?.length, resolved.length);
    assert.match(svg, new RegExp(`labels: ${xs.length} of ${resolved.length} regions`));
  }
});

Deno.test("renderMemorySvg() axis linear makes region width follow region size", () => {
  const regions = [
    { start: 0x100000, end: 0x200000, type: "usable" }, // 1 MiB
    { start: 0x200000, end: 0x600000, type: "usable" }, // 4 MiB
    { start: 0x1000000, end: 0x1100000, type: "reserved" }, // 1 MiB after a hole
  ];
  const widths = (axis: "log" | "linear") =>
    [
      ...renderMemorySvg({ regions }, { axis }).matchAll(
        /class="region \w+" x="[\d.]+" y="\d+" width="([\d.]+)"/g,
      ),
    ]
      .map((m) => Number(m[1]));
  const [small, large, after] = widths("linear");
  assert.ok(Math.abs(large / small - 4) < 0.01, `4 MiB / 1 MiB drawn ${large / small}`);
  assert.ok(Math.abs(after - small) < 0.01);
  const [logSmall, logLarge] = widths("log");
  assert.ok(logLarge / logSmall < 2, "the log axis keeps small regions wide");
  assert.match(renderMemorySvg({ regions }, { axis: "linear" }), /width proportional to size/);
});

Deno.test("renderMemorySvg() and renderMemoryTerminal() name a named range such as the kernel image", () => {
  const regions = [
    { start: 0x100000, end: 0x1000000, type: "usable" },
    { start: 0x1000000, end: 0x3000000, type: "reserved", name: "kernel image" },
    ...Array.from({ length: 40 }, (_, i) => ({
      start: 0x3000000 + i * 0x2000,
      end: 0x3001000 + i * 0x2000,
      type: "usable",
    })),
  ];
  const svg = renderMemorySvg({ regions });
  assert.match(svg, /<text [^>]*font-weight="bold">0x1000000 32 MiB kernel image<\/text>/);
  const text = renderMemoryTerminal({ regions }, { color: false, widthColumns: 80 });
  assert.match(text, /0x1000000 +32 MiB kernel image /);
});
