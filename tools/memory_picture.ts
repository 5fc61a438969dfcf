/**
 * Pictures of physical memory: an SVG and a compact ANSI terminal view of a
 * memory map with the allocator's blocks on top. Pure functions of plain
 * data, so the boot demo can feed them from `PhysicalAllocator.blocks()`.
 *
 * Physical maps span 13 orders of magnitude (a 4 KiB block next to a 16 GiB
 * region, holes of gigabytes), so the address axis is piecewise: every piece
 * between two boundaries (region edges and the edges of runs of free or used
 * blocks) gets a width of `log2(1 + size / 4 KiB)` units, and holes between
 * regions are drawn as a fixed-width break. A 4 KiB block is one unit; a
 * 16 GiB stretch is 22. Where a region holds too many runs, the small ones
 * between the largest are grouped and drawn linearly.
 *
 * The proportional axis (`axis: "linear"`) is the other choice: every piece
 * is as wide as its size, so a region's width follows its size (and a 4 KiB
 * region beside 16 GiB ones is a hairline); holes are still breaks, of 1%
 * of the width each.
 *
 * Labels (start address and size, and the name of a named range such as
 * the "kernel image" reservation) are placed named ranges first, then
 * largest regions first, and only where they keep clear of the labels
 * already placed; every region keeps its full description in a tooltip.
 *
 * ```text
 * usable ████░░░░░░░░░░ ╱╱ usable ██░░░░░░░░░░░░░░░░░ ╱╱ reserved ▓▓▓
 *        ^used ^free    ^hole
 * ```
 *
 * @module
 */

/** A range of the memory map to draw (exclusive end), as `MemoryMapEntry` has it. */
export interface PictureRegion {
  /** First address. */
  readonly start: number;
  /** One past the last address. */
  readonly end: number;
  /** `"usable"` or any other memory type (drawn as reserved). */
  readonly type: string;
  /** Extra words for the tooltip and terminal line, for example `"relocated +0x200000"`. */
  readonly note?: string;
  /** A name printed with the region's label, for example `"kernel image"`; named regions are labelled first. */
  readonly name?: string;
}

/** How the address axis measures width: see the module doc. */
export type AxisScale = "log" | "linear";

/** A block of the allocator, as `PhysicalAllocator.blocks()` yields it. */
export interface PictureBlock {
  /** Address of the block's first byte. */
  readonly address: number;
  /** Bytes of the block, header included. */
  readonly sizeBytes: number;
  /** Whether the block is free. */
  readonly free: boolean;
  /** For memory in use by the page-frame layer: a page run (`"frames"`) or a slab (`"slab"`). */
  readonly layer?: "frames" | "slab";
}

/** What to draw. */
export interface MemoryPicture {
  /** The map's regions, in any order; overlapping regions are drawn over each other. */
  readonly regions: readonly PictureRegion[];
  /** The allocator's blocks, in any order. */
  readonly blocks?: readonly PictureBlock[];
  /** A title for the SVG and the terminal view's first line. */
  readonly title?: string;
}

/** Options of {@linkcode renderMemorySvg}. */
export interface SvgOptions {
  /**
   * Width of the picture in pixels.
   * @default {1200}
   */
  readonly widthPx?: number;
  /**
   * Above this many blocks, runs of neighbouring blocks with the same state are drawn as one.
   * @default {2000}
   */
  readonly blockRectsMax?: number;
  /**
   * The address axis: `"log"` (piecewise log widths) or `"linear"` (width proportional to size).
   * @default {"log"}
   */
  readonly axis?: AxisScale;
}

/** Options of {@linkcode renderMemoryTerminal}. */
export interface TerminalOptions {
  /**
   * Width of the view in columns.
   * @default {80}
   */
  readonly widthColumns?: number;
  /**
   * Colour with ANSI escapes; without, the characters alone tell the states apart.
   * @default {true}
   */
  readonly color?: boolean;
  /**
   * At most this many per-region lines follow the overview line.
   * @default {16}
   */
  readonly regionLinesMax?: number;
  /**
   * The address axis, as for the SVG.
   * @default {"log"}
   */
  readonly axis?: AxisScale;
}

const PAGE_BYTES = 4096;
const HOLE_UNITS = 2;
/** On the linear axis the regions share this many units and each hole takes 1% of them. */
const LINEAR_UNITS = 1000;
const LINEAR_HOLE_UNITS = LINEAR_UNITS / 100;
/** Pieces one region may be cut into before small pieces are grouped. */
const PIECES_PER_REGION_MAX = 48;

interface Piece {
  readonly start: number;
  readonly end: number;
  readonly units: number;
}

/** A piecewise log axis over sorted regions; see the module doc. */
interface Axis {
  readonly pieces: readonly Piece[];
  /** Unit offset of each piece's start. */
  readonly offsets: readonly number[];
  readonly totalUnits: number;
  /** Holes as unit ranges, for break marks. */
  readonly holes: readonly { readonly at: number; readonly units: number }[];
}

/** A piece's width: a 4 KiB piece is 1 unit, 16 GiB is 22, a 64-byte block a quarter. */
function logUnits(sizeBytes: number): number {
  return Math.max(0.25, Math.log2(1 + sizeBytes / PAGE_BYTES));
}

/** Width of a piece of `sizeBytes`: on the log axis, or proportional given the bytes per unit. */
type PieceUnits = (sizeBytes: number) => number;

/**
 * Cuts a region at the edges of the block runs inside it. When that makes
 * more than {@linkcode PIECES_PER_REGION_MAX} pieces, only the largest half
 * keep pieces of their own and each stretch of smaller ones between them
 * becomes one piece, drawn linearly: thousands of small blocks must not
 * squeeze a 16 GiB free block to nothing.
 */
function regionPieces(
  start: number,
  end: number,
  runs: readonly PictureBlock[],
  pieceUnits: PieceUnits,
): Piece[] {
  const cuts = [start];
  for (const run of runs) {
    for (const edge of [run.address, run.address + run.sizeBytes]) {
      if (edge > cuts[cuts.length - 1] && edge < end) cuts.push(edge);
    }
  }
  cuts.push(end);
  const raw: { start: number; end: number }[] = [];
  for (let index = 1; index < cuts.length; index++) {
    raw.push({ start: cuts[index - 1], end: cuts[index] });
  }
  if (raw.length <= PIECES_PER_REGION_MAX) {
    return raw.map((p) => ({ ...p, units: pieceUnits(p.end - p.start) }));
  }
  const sizes = raw.map((p) => p.end - p.start).sort((a, b) => b - a);
  const threshold = sizes[PIECES_PER_REGION_MAX / 2 - 1];
  const pieces: { start: number; end: number; grouped: boolean }[] = [];
  let keptCount = 0;
  for (const piece of raw) {
    const keep = piece.end - piece.start >= threshold && keptCount < PIECES_PER_REGION_MAX / 2;
    const last = pieces[pieces.length - 1];
    if (keep) {
      keptCount++;
      pieces.push({ ...piece, grouped: false });
    } else if (last !== undefined && last.grouped) {
      last.end = piece.end;
    } else {
      pieces.push({ ...piece, grouped: true });
    }
  }
  return pieces.map((p) => ({ start: p.start, end: p.end, units: pieceUnits(p.end - p.start) }));
}

/** Builds the axis over regions (any order) and block runs (sorted by address). */
function buildAxis(
  regions: readonly PictureRegion[],
  runs: readonly PictureBlock[],
  scale: AxisScale = "log",
): Axis {
  const sorted = [...regions].sort((a, b) => a.start - b.start);
  let drawnBytes = 0;
  let end = -1;
  for (const region of sorted) {
    drawnBytes += Math.max(0, region.end - Math.max(region.start, end));
    end = Math.max(end, region.end);
  }
  const pieceUnits: PieceUnits = scale === "linear"
    ? (sizeBytes) => sizeBytes / drawnBytes * LINEAR_UNITS
    : logUnits;
  const holeUnits = scale === "linear" ? LINEAR_HOLE_UNITS : HOLE_UNITS;
  const pieces: Piece[] = [];
  const offsets: number[] = [];
  const holes: { at: number; units: number }[] = [];
  let units = 0;
  let cursor = -1;
  let runIndex = 0;
  for (const region of sorted) {
    const start = Math.max(region.start, cursor);
    if (start >= region.end) continue;
    if (cursor >= 0 && start > cursor) {
      holes.push({ at: units, units: holeUnits });
      units += holeUnits;
    }
    while (runIndex < runs.length && runs[runIndex].address + runs[runIndex].sizeBytes <= start) {
      runIndex++;
    }
    let last = runIndex;
    while (last < runs.length && runs[last].address < region.end) last++;
    for (const piece of regionPieces(start, region.end, runs.slice(runIndex, last), pieceUnits)) {
      offsets.push(units);
      pieces.push(piece);
      units += piece.units;
    }
    cursor = region.end;
  }
  return { pieces, offsets, totalUnits: units, holes };
}

/** The axis position, in units, of an address inside a drawn region. */
function unitsAt(axis: Axis, address: number): number {
  let low = 0;
  let high = axis.pieces.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (axis.pieces[middle].start <= address) low = middle;
    else high = middle - 1;
  }
  const piece = axis.pieces[low];
  if (piece === undefined) return 0;
  const fraction = Math.min(1, Math.max(0, (address - piece.start) / (piece.end - piece.start)));
  return axis.offsets[low] + fraction * piece.units;
}

/** Sorts blocks and, past `limit` of them, merges touching blocks of the same state. */
function mergeRuns(blocks: readonly PictureBlock[], limit: number): PictureBlock[] {
  const sorted = [...blocks].sort((a, b) => a.address - b.address);
  if (sorted.length <= limit) return sorted;
  const runs: PictureBlock[] = [];
  for (const block of sorted) {
    const last = runs[runs.length - 1];
    if (
      last !== undefined && last.free === block.free &&
      last.address + last.sizeBytes === block.address
    ) {
      runs[runs.length - 1] = { ...last, sizeBytes: last.sizeBytes + block.sizeBytes };
    } else {
      runs.push(block);
    }
  }
  return runs;
}

function hexAddress(address: number): string {
  return `0x${address.toString(16)}`;
}

function sizeText(sizeBytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = sizeBytes;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index++;
  }
  return `${Math.round(value * 10) / 10} ${units[index]}`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isUsable(region: PictureRegion): boolean {
  return region.type === "usable";
}

/**
 * Draws memory as SVG: one rectangle per region along a piecewise log
 * address axis (usable green, everything else grey), the allocator's blocks
 * in a band below (used orange, free light green), holes as break marks, and
 * the start address of each region.
 *
 * @param picture The regions, blocks and title.
 * @param options Width and block merging.
 * @returns A standalone SVG document.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderMemorySvg } from "./memory_picture.ts";
 *
 * const svg = renderMemorySvg({
 *   regions: [{ start: 0x1000, end: 0x9f000, type: "usable" }, { start: 0x100000000, end: 0x500000000, type: "usable" }],
 *   blocks: [{ address: 0x100000000, sizeBytes: 4096, free: false }],
 * });
 * assert.equal(svg.match(/class="region /g)?.length, 2);
 * assert.equal(svg.match(/class="block used"/g)?.length, 1);
 * ```
 */
export function renderMemorySvg(picture: MemoryPicture, options: SvgOptions = {}): string {
  const widthPx = options.widthPx ?? 1200;
  const blocks = mergeRuns(picture.blocks ?? [], options.blockRectsMax ?? 2000);
  const regions = [...picture.regions].sort((a, b) => a.start - b.start);
  const axis = buildAxis(regions, mergeRuns(blocks, 0), options.axis);
  const scale = axis.totalUnits > 0 ? (widthPx - 2 * SVG_MARGIN_PX) / axis.totalUnits : 0;
  const frame: SvgFrame = {
    axis,
    scale,
    x: (address) => SVG_MARGIN_PX + unitsAt(axis, address) * scale,
  };
  const heightPx = SVG_LABEL_Y + 130;
  const labels = svgLabels(frame, regions);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${widthPx}" height="${heightPx}" viewBox="0 0 ${widthPx} ${heightPx}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="10">`,
    `<style>.usable{fill:#7cc47c}.reserved{fill:#b0b0b0}.used{fill:#f08c2a}.frames{fill:#4a7fd0}.slab{fill:#b35cc8}.free{fill:#d4f0d4}.hole{stroke:#555;fill:none}.region{stroke:#333;stroke-width:0.5}</style>`,
    `<rect width="${widthPx}" height="${heightPx}" fill="#fff"/>`,
    `<text x="${SVG_MARGIN_PX}" y="20" font-size="14">${
      escapeXml(picture.title ?? "Physical memory")
    }</text>`,
    ...regions.map((region) => svgRegion(frame, region)),
    ...blocks.map((block) => svgBlock(frame, block)),
    ...axis.holes.map((hole) => svgHole(frame, hole)),
    ...labels.parts,
    `<text x="${SVG_MARGIN_PX}" y="${heightPx - 30}">${
      escapeXml(
        `labels: ${labels.count} of ${regions.length} regions (the rest: hover a region for its range)`,
      )
    }</text>`,
    legendSvg(SVG_MARGIN_PX, heightPx - 12, options.axis ?? "log"),
    "</svg>",
  ].join("\n") + "\n";
}

const SVG_MARGIN_PX = 20;
const SVG_REGION_Y = 40;
const SVG_REGION_HEIGHT = 36;
const SVG_BLOCK_Y = SVG_REGION_Y + SVG_REGION_HEIGHT + 6;
const SVG_BLOCK_HEIGHT = 28;
const SVG_LABEL_Y = SVG_BLOCK_Y + SVG_BLOCK_HEIGHT + 14;

interface SvgFrame {
  readonly axis: Axis;
  /** Pixels per axis unit. */
  readonly scale: number;
  /** The x pixel of an address. */
  readonly x: (address: number) => number;
}

function svgRegion(frame: SvgFrame, region: PictureRegion): string {
  const x0 = frame.x(region.start);
  const widthRect = Math.max(0.5, frame.x(region.end) - x0);
  const kind = isUsable(region) ? "usable" : "reserved";
  const tip = `${hexAddress(region.start)}-${hexAddress(region.end - 1)} ${
    sizeText(region.end - region.start)
  } ${region.type}${region.note ? ` (${region.note})` : ""}`;
  return `<rect class="region ${kind}" x="${x0.toFixed(2)}" y="${SVG_REGION_Y}" width="${
    widthRect.toFixed(2)
  }" height="${SVG_REGION_HEIGHT}"><title>${escapeXml(tip)}</title></rect>`;
}

function svgBlock(frame: SvgFrame, block: PictureBlock): string {
  const x0 = frame.x(block.address);
  const widthRect = Math.max(0.5, frame.x(block.address + block.sizeBytes) - x0);
  const state = block.free ? "free" : block.layer ?? "used";
  return `<rect class="block ${state}" x="${x0.toFixed(2)}" y="${SVG_BLOCK_Y}" width="${
    widthRect.toFixed(2)
  }" height="${SVG_BLOCK_HEIGHT}"><title>${
    escapeXml(`${hexAddress(block.address)} ${sizeText(block.sizeBytes)} ${state}`)
  }</title></rect>`;
}

function svgHole(frame: SvgFrame, hole: { readonly at: number; readonly units: number }): string {
  const x0 = SVG_MARGIN_PX + hole.at * frame.scale;
  const x1 = x0 + hole.units * frame.scale;
  const y0 = SVG_REGION_Y - 4;
  const y1 = SVG_BLOCK_Y + SVG_BLOCK_HEIGHT + 4;
  return `<path class="hole" d="M${x0.toFixed(2)} ${y0} L${x0.toFixed(2)} ${y1} M${
    x1.toFixed(2)
  } ${y0} L${x1.toFixed(2)} ${y1}" stroke-dasharray="3 2"/>`;
}

/**
 * Labels rotated by 45° overprint each other when their starts are closer
 * than this: at 10 px type, 16 px apart leaves 11 px between the slanted lines.
 */
const LABEL_SPACING_PX = 16;

/**
 * Start address, size and name under regions: named regions first, then
 * the largest, each only where it keeps {@linkcode LABEL_SPACING_PX} from
 * every label already placed (a sorted list of placed x positions, so the
 * check is a binary search).
 */
function svgLabels(
  frame: SvgFrame,
  regions: readonly PictureRegion[],
): { parts: string[]; count: number } {
  const order = [...regions].sort((a, b) =>
    Number(b.name !== undefined) - Number(a.name !== undefined) ||
    (b.end - b.start) - (a.end - a.start)
  );
  const placed: number[] = [];
  const parts: string[] = [];
  for (const region of order) {
    const x0 = frame.x(region.start);
    let low = 0;
    let high = placed.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (placed[middle] < x0) low = middle + 1;
      else high = middle;
    }
    const near = [placed[low - 1], placed[low]].some((x) =>
      x !== undefined && Math.abs(x - x0) < LABEL_SPACING_PX
    );
    if (near) continue;
    placed.splice(low, 0, x0);
    const text = `${hexAddress(region.start)} ${sizeText(region.end - region.start)}${
      region.name === undefined ? "" : ` ${region.name}`
    }`;
    parts.push(
      `<text x="${x0.toFixed(2)}" y="${SVG_LABEL_Y}" transform="rotate(45 ${
        x0.toFixed(2)
      } ${SVG_LABEL_Y})"${region.name === undefined ? "" : ' font-weight="bold"'}>${
        escapeXml(text)
      }</text>`,
    );
  }
  return { parts, count: parts.length };
}

function legendSvg(xPx: number, yPx: number, axis: AxisScale): string {
  const items: [string, string][] = [
    ["usable", "usable region"],
    ["reserved", "reserved/other"],
    ["used", "allocated block"],
    ["free", "free block"],
    ["frames", "page frames"],
    ["slab", "slab objects"],
  ];
  return items.map(([kind, label], index) => {
    const x0 = xPx + index * 150;
    return `<rect class="${kind}" x="${x0}" y="${yPx - 9}" width="12" height="10"/><text x="${
      x0 + 16
    }" y="${yPx}">${label}</text>`;
  }).join("\n") +
    `\n<text x="${xPx + 920}" y="${yPx}">axis: ${
      axis === "linear" ? "width proportional to size" : "log-scaled pieces"
    }, holes broken (dashed)</text>`;
}

const STATE_CHARS = {
  used: "█",
  frames: "▚",
  slab: "▤",
  free: "░",
  usable: "▒",
  reserved: "▓",
  hole: "┊",
} as const;
const STATE_COLORS = {
  used: "\x1b[33m",
  frames: "\x1b[34m",
  slab: "\x1b[35m",
  free: "\x1b[32m",
  usable: "\x1b[36m",
  reserved: "\x1b[90m",
  hole: "\x1b[2m",
} as const;
type CellState = keyof typeof STATE_CHARS;
/** When several states share a column, the most interesting one is shown. */
const STATE_RANK: Record<CellState, number> = {
  hole: 0,
  reserved: 1,
  usable: 2,
  free: 3,
  used: 4,
  frames: 5,
  slab: 5,
};

function paintBar(
  regions: readonly PictureRegion[],
  blocks: readonly PictureBlock[],
  columns: number,
  color: boolean,
  scale: AxisScale,
): string {
  const axis = buildAxis(regions, mergeRuns(blocks, 0), scale);
  const cells = new Array<CellState | undefined>(columns).fill(undefined);
  const perUnit = axis.totalUnits > 0 ? columns / axis.totalUnits : 0;
  const paint = (fromUnits: number, toUnits: number, state: CellState) => {
    const first = Math.min(columns - 1, Math.floor(fromUnits * perUnit));
    const last = Math.max(first, Math.min(columns - 1, Math.ceil(toUnits * perUnit) - 1));
    for (let column = first; column <= last; column++) {
      const current = cells[column];
      if (current === undefined || STATE_RANK[state] > STATE_RANK[current]) cells[column] = state;
    }
  };
  for (const hole of axis.holes) paint(hole.at, hole.at + hole.units, "hole");
  for (const region of regions) {
    paint(
      unitsAt(axis, region.start),
      unitsAt(axis, region.end),
      isUsable(region) ? "usable" : "reserved",
    );
  }
  for (const block of blocks) {
    paint(
      unitsAt(axis, block.address),
      unitsAt(axis, block.address + block.sizeBytes),
      block.free ? "free" : block.layer ?? "used",
    );
  }
  let bar = "";
  let open: CellState | undefined;
  for (const cell of cells) {
    const state = cell ?? "hole";
    if (color && state !== open) bar += STATE_COLORS[state];
    open = state;
    bar += STATE_CHARS[state];
  }
  return color ? `${bar}\x1b[0m` : bar;
}

/**
 * Draws memory for a terminal: an overview bar over the whole map (same
 * piecewise log axis as the SVG), then one line per region with its range,
 * size, type and its own bar.
 *
 * @param picture The regions, blocks and title.
 * @param options Width, colour and how many region lines.
 * @returns Lines joined with `\n`, ending in a newline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderMemoryTerminal } from "./memory_picture.ts";
 *
 * const text = renderMemoryTerminal({
 *   regions: [{ start: 0x100000, end: 0x200000, type: "usable" }],
 *   blocks: [{ address: 0x100000, sizeBytes: 0x80000, free: false }, { address: 0x180000, sizeBytes: 0x80000, free: true }],
 * }, { color: false, widthColumns: 60 });
 * assert.match(text, /█+░+/);
 * assert.ok(text.split("\n").every((line) => line.length <= 60));
 * ```
 */
export function renderMemoryTerminal(
  picture: MemoryPicture,
  options: TerminalOptions = {},
): string {
  const columns = Math.max(20, options.widthColumns ?? 80);
  const color = options.color ?? true;
  const linesMax = options.regionLinesMax ?? 16;
  const regions = [...picture.regions].sort((a, b) => a.start - b.start);
  const blocks = [...(picture.blocks ?? [])].sort((a, b) => a.address - b.address);
  const lines: string[] = [];
  lines.push((picture.title ?? "Physical memory").slice(0, columns));
  const axis = options.axis ?? "log";
  lines.push(paintBar(regions, blocks, columns, color, axis));
  const legend =
    `${STATE_CHARS.used} used  ${STATE_CHARS.frames} page frames  ${STATE_CHARS.slab} slab  ${STATE_CHARS.free} free  ${STATE_CHARS.usable} usable  ${STATE_CHARS.reserved} reserved  ${STATE_CHARS.hole} hole`;
  lines.push(legend.slice(0, columns));
  let blockIndex = 0;
  for (const [index, region] of regions.entries()) {
    if (index >= linesMax) {
      lines.push(`… ${regions.length - linesMax} more regions`);
      break;
    }
    const first = blockIndex;
    while (blockIndex < blocks.length && blocks[blockIndex].address < region.end) blockIndex++;
    const inside = blocks.slice(first, blockIndex).filter((b) => b.address >= region.start);
    const label = `${hexAddress(region.start).padStart(12)} ${
      sizeText(region.end - region.start).padStart(9)
    } ${(region.name ?? region.type).slice(0, 12).padEnd(12)} `;
    const barColumns = columns - label.length;
    lines.push(
      barColumns >= 8
        ? label + paintBar([region], inside, barColumns, color, axis)
        : label.slice(0, columns),
    );
  }
  return lines.join("\n") + "\n";
}
