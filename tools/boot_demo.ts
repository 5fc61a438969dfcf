/**
 * The boot demo: what a kernel's early memory setup does, in a Deno process.
 *
 * 1. Read a firmware memory map: this machine's `/sys/firmware/memmap`
 *    (default), a file (`--map`) or a built-in sample (`--sample`).
 * 2. Normalise it and reserve the kernel image (like Linux memblock).
 * 3. `mmap` every usable range at its physical address (identity mapping).
 * 4. Start a `PhysicalAllocator` over it, allocate page tables like early
 *    boot does, replay a real program's allocation trace, run `check()`.
 * 5. Print the map, stats before and after, a terminal picture, the process's
 *    resident memory, and write an SVG picture.
 *
 * Run: `deno task demo [flags]` (see `--help`). Needs `--allow-ffi` for
 * mmap; Deno 2 refuses reads of `/sys` and `/proc` without `--allow-all`,
 * so the host map is read through libc's `fopen` (which `--allow-ffi`
 * already permits) and the demo says so.
 *
 * @module
 */

import { parseArgs } from "#cli";
import {
  AllocatorError,
  type AllocatorStats,
  formatBytes,
  type IdentityMemory,
  mapIdentity,
  MEMORY_MAP_FORMATS,
  MemoryMap,
  type MemoryMapEntry,
  type MemoryMapFormat,
  type NormalizedMemoryMap,
  OutOfMemoryError,
  parseAddress,
  parseMemoryMap,
  PhysicalAllocator,
  POLICY_NAMES,
  type PolicyName,
  readMmapMinAddress,
  readSysfsMemmap,
  SAMPLE_MAP_NAMES,
  sampleMemoryMap,
} from "../mod.ts";
import { HEADER_BYTES } from "../allocator/heap/layout.ts";
import {
  type DecodedTrace,
  decodeTrace,
  REPLAY_ALLOC,
  REPLAY_FREE,
  REPLAY_REALLOC,
} from "./trace/decode.ts";
import { parseRep } from "./trace/rep_format.ts";
import {
  type AxisScale,
  type PictureBlock,
  type PictureRegion,
  renderMemorySvg,
  renderMemoryTerminal,
} from "./memory_picture.ts";

const DEFAULT_TRACE = new URL("../bench/traces/git.rep", import.meta.url);
const PAGE_BYTES = 4096;
const HUGE_PAGE_BYTES = 2 * 1024 * 1024;

const HELP = `Usage: deno task demo [flags]

Identity-maps a firmware memory map into this process with mmap and runs the
physical memory allocator over it, like a kernel's early boot.

Flags:
  --map FILE            Read the memory map from FILE: JSON, E820 dmesg lines or a
                        sysfs dump (see --format). Default: this machine's
                        /sys/firmware/memmap, or the qemu sample if unreadable.
  --format FORMAT       Format of --map: auto (default), json, e820, sysfs.
  --sample NAME         Use a built-in map instead: ${SAMPLE_MAP_NAMES.join(", ")}.
  --kernel-start ADDR   Start of the "kernel image" reservation (default 0x1000000).
  --kernel-size BYTES   Size of the "kernel image" reservation (default 0x2000000; 0 = none).
  --mmap-min-addr ADDR  Lowest mappable address (default: the host's vm.mmap_min_addr).
  --pages N             Early-boot page-table pages to allocate (default 512).
  --trace FILE          Allocation trace (.rep) to replay (default bench/traces/git.rep;
                        "none" to skip).
  --policy NAME         Allocator policy: tlsf (default) or first-fit.
  --svg PATH            Where to write the SVG picture (default out/memory.svg;
                        "none" to skip).
  --axis SCALE          Address axis of the pictures: log (default; small regions stay
                        visible) or linear (width proportional to size).
  --width N             Terminal picture width in columns (default 100).
  --color WHEN          Colour the terminal picture: auto (default), always, never.
  -h, --help            Show this help and exit.

Needs: deno run --allow-ffi --allow-read --allow-write --allow-env tools/boot_demo.ts
(--allow-ffi is as powerful as --allow-all: it runs native code.)
`;

/** A command-line mistake: printed as one line, exit code 2. */
class UsageError extends Error {}

interface Settings {
  readonly map?: string;
  readonly format: string;
  readonly sample?: string;
  readonly kernelStart: number;
  readonly kernelBytes: number;
  readonly mmapMinAddress?: number;
  readonly pageCount: number;
  readonly trace?: string;
  readonly policy: PolicyName;
  readonly svg?: string;
  readonly axis: AxisScale;
  readonly widthColumns: number;
  readonly color: boolean;
}

function parseSettings(args: readonly string[]): Settings | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        map: { type: "string" },
        format: { type: "string", default: "auto" },
        sample: { type: "string" },
        "kernel-start": { type: "string", default: "0x1000000" },
        "kernel-size": { type: "string", default: "0x2000000" },
        "mmap-min-addr": { type: "string" },
        pages: { type: "string", default: "512" },
        trace: { type: "string" },
        policy: { type: "string", default: "tlsf" },
        svg: { type: "string", default: "out/memory.svg" },
        axis: { type: "string", default: "log" },
        width: { type: "string", default: "100" },
        color: { type: "string", default: "auto" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message.split("\n")[0]);
  }
  const v = parsed.values;
  if (v.help) return "help";
  if (v.map !== undefined && v.sample !== undefined) {
    throw new UsageError("Cannot use --map and --sample together: choose one map source");
  }
  oneOf("--format", v.format, ["auto", ...MEMORY_MAP_FORMATS]);
  oneOf("--policy", v.policy, POLICY_NAMES);
  oneOf("--color", v.color, ["auto", "always", "never"]);
  oneOf("--axis", v.axis, ["log", "linear"]);
  if (v.sample !== undefined) oneOf("--sample", v.sample, SAMPLE_MAP_NAMES);
  return {
    map: v.map,
    format: v.format,
    sample: v.sample,
    kernelStart: numberFlag("--kernel-start", v["kernel-start"], 0),
    kernelBytes: numberFlag("--kernel-size", v["kernel-size"], 0),
    mmapMinAddress: v["mmap-min-addr"] === undefined
      ? undefined
      : numberFlag("--mmap-min-addr", v["mmap-min-addr"], 0),
    pageCount: numberFlag("--pages", v.pages, 0),
    trace: v.trace === "none" ? undefined : v.trace ?? decodeURIComponent(DEFAULT_TRACE.pathname),
    policy: v.policy as PolicyName,
    svg: v.svg === "none" ? undefined : v.svg,
    axis: v.axis as AxisScale,
    widthColumns: numberFlag("--width", v.width, 40),
    color: v.color === "always" || (v.color === "auto" && wantsColor()),
  };
}

function oneOf(flag: string, value: string, allowed: readonly string[]): void {
  if (!allowed.includes(value)) {
    throw new UsageError(`Invalid ${flag} "${value}": expected one of ${allowed.join(", ")}`);
  }
}

function numberFlag(flag: string, text: string, minimum: number): number {
  let value: number;
  try {
    value = parseAddress(text, flag);
  } catch {
    throw new UsageError(`Invalid ${flag} "${text}": expected a number (decimal or 0x hex)`);
  }
  if (value < minimum) {
    throw new UsageError(`Invalid ${flag} ${text}: it must be at least ${minimum}`);
  }
  return value;
}

function wantsColor(): boolean {
  try {
    return Deno.stdout.isTerminal() && Deno.env.get("NO_COLOR") === undefined;
  } catch {
    return false;
  }
}

interface LoadedMap {
  readonly entries: MemoryMapEntry[];
  readonly source: string;
  readonly mmapMinAddress: number;
}

function loadMap(settings: Settings): LoadedMap {
  const mmapMinAddress = settings.mmapMinAddress ?? readMmapMinAddress({ libcFallback: true });
  if (settings.sample !== undefined) {
    return {
      entries: sampleMemoryMap(settings.sample),
      source: `sample "${settings.sample}"`,
      mmapMinAddress,
    };
  }
  if (settings.map !== undefined) {
    const text = Deno.readTextFileSync(settings.map);
    const { entries, format } = parseMemoryMap(text, settings.format as MemoryMapFormat | "auto");
    return { entries, source: `${settings.map} (${format})`, mmapMinAddress };
  }
  try {
    const host = readSysfsMemmap({ libcFallback: true });
    const via = host.readVia === "libc"
      ? " (read through libc fopen: Deno needs --allow-all for /sys, --allow-ffi already allows it)"
      : "";
    return {
      entries: host.entries,
      source: `this machine's /sys/firmware/memmap${via}`,
      mmapMinAddress,
    };
  } catch (error) {
    const reason = (error as Error).message;
    return {
      entries: sampleMemoryMap("qemu"),
      source: `sample "qemu" (host map unreadable: ${reason})`,
      mmapMinAddress,
    };
  }
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(10, "0")}`;
}

function signedHex(value: number): string {
  return `${value < 0 ? "-" : "+"}0x${Math.abs(value).toString(16)}`;
}

function mappingLabel(memory: IdentityMemory, start: number, end: number): string {
  const inside = memory.mappings.filter((m) => m.physicalBase >= start && m.physicalBase < end);
  if (inside.length === 0) return "-";
  const relocated = inside.filter((m) => m.kind === "relocated");
  if (relocated.length === 0) return "identity";
  return `relocated ${relocated.map((m) => signedHex(m.offsetBytes)).join(",")}`;
}

function printMapTable(normalized: NormalizedMemoryMap, memory: IdentityMemory): void {
  const rows = [["start", "end", "size", "type", "mapping", "skipped"]];
  for (const run of normalized.resolved) {
    const usableBytes = normalized.usable
      .filter((r) => r.start >= run.start && r.start < run.end)
      .reduce((sum, r) => sum + r.length, 0);
    const size = run.end - run.start;
    rows.push([
      hex(run.start),
      hex(run.end - 1),
      formatBytes(size),
      run.type,
      run.type === "usable" ? mappingLabel(memory, run.start, run.end) : "-",
      run.type === "usable" ? formatBytes(size - usableBytes) : "-",
    ]);
  }
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  const shown = rows.length > 40 ? [...rows.slice(0, 38), rows[rows.length - 1]] : rows;
  for (const [index, row] of shown.entries()) {
    if (index === 38 && rows.length > 40) console.log(`  … ${rows.length - 39} more rows`);
    console.log("  " + row.map((cell, column) => cell.padEnd(widths[column])).join("  "));
  }
  const report = normalized.report;
  console.log(
    `  accounting: ${report.coveredBytes} bytes covered = ${report.usableBytes} usable + ${report.reservedBytes} reserved + ${report.clippedBytes} clipped + ${report.droppedBytes} dropped (overlaps: ${report.overlapBytes})`,
  );
  for (const reason of report.reasons) {
    if (reason.disposition === "usable") continue;
    console.log(
      `    ${reason.disposition.padEnd(8)} ${
        formatBytes(reason.sizeBytes).padStart(9)
      }  ${reason.reason}`,
    );
  }
}

function printStats(label: string, stats: AllocatorStats): void {
  console.log(
    `${label}: total ${formatBytes(stats.totalBytes)}, free ${formatBytes(stats.freeBytes)}, used ${
      formatBytes(stats.usedBytes)
    }, overhead ${
      formatBytes(stats.overheadBytes)
    }, ${stats.freeBlocks} free / ${stats.usedBlocks} used blocks, largest free ${
      formatBytes(stats.largestFreeBytes)
    }, ${stats.skippedRegions} regions skipped (${formatBytes(stats.skippedBytes)})`,
  );
  const layers = stats.layers;
  if (layers === null) return;
  console.log(
    `  page frames: ${layers.chunks} chunks, ${layers.totalFrames} frames (${layers.freeFrames} free, ${layers.pageFrames} in page runs, ${layers.slabFrames} in slabs); buddyinfo ${
      layers.buddyinfo.join(" ")
    }`,
  );
  const active = layers.slabinfo.filter((line) => line.slabs > 0);
  for (const line of active.slice(0, 6)) {
    console.log(
      `  slabinfo ${
        line.name.padEnd(12)
      } ${line.activeObjects}/${line.totalObjects} objects of ${line.objectBytes} B, ${line.objectsPerSlab} per slab of ${line.pagesPerSlab} pages, ${line.activeSlabs}/${line.slabs} slabs`,
    );
  }
  if (active.length > 6) console.log(`  slabinfo … ${active.length - 6} more caches`);
}

/** Early boot: page-table pages (4 KiB aligned), one 2 MiB huge page, some pages given back. */
function earlyBoot(heap: PhysicalAllocator, memory: IdentityMemory, pageCount: number): void {
  const started = performance.now();
  const pages: number[] = [];
  for (let index = 0; index < pageCount; index++) {
    const page = heap.alloc(PAGE_BYTES, PAGE_BYTES);
    heap.bytes(page, 8).fill(index & 0xff); // touch it, as zeroing a page table would
    pages.push(page);
  }
  const hugePage = pageCount > 0 ? heap.tryAlloc(HUGE_PAGE_BYTES, HUGE_PAGE_BYTES) : 0;
  for (let index = 0; index < pages.length; index += 4) heap.free(pages[index]);
  const identity = pages.every((page) =>
    memory.mappings.some((m) =>
      m.kind === "identity" && m.base <= page && page < m.base + m.lengthBytes
    )
  );
  console.log(
    `early boot: ${pageCount} page-aligned 4 KiB pages in ${
      (performance.now() - started).toFixed(1)
    } ms, ` +
      `every 4th freed again; first pages ${
        pages.slice(0, 3).map((p) => `0x${p.toString(16)}`).join(", ")
      }` +
      (identity ? " (physical addresses: identity-mapped)" : " (some in relocated regions)") +
      (hugePage !== 0
        ? `; 2 MiB huge page at 0x${hugePage.toString(16)}`
        : "; no free block fits a 2 MiB huge page"),
  );
}

function replay(heap: PhysicalAllocator, trace: DecodedTrace): void {
  const started = performance.now();
  const slots = new Float64Array(trace.slotCount);
  let failed = 0;
  for (let index = 0; index < trace.opCount; index++) {
    const id = trace.ids[index];
    const kind = trace.kinds[index];
    const sizeBytes = Math.max(1, trace.sizesBytes[index]);
    if (kind === REPLAY_ALLOC || (kind === REPLAY_REALLOC && slots[id] === 0)) {
      slots[id] = heap.tryAlloc(sizeBytes);
      if (slots[id] === 0) failed++;
    } else if (kind === REPLAY_FREE) {
      if (slots[id] !== 0) heap.free(slots[id]);
      slots[id] = 0;
    } else if (kind === REPLAY_REALLOC) {
      try {
        slots[id] = heap.realloc(slots[id], sizeBytes);
      } catch (error) {
        if (!(error instanceof OutOfMemoryError)) throw error;
        failed++;
      }
    }
  }
  const elapsedMs = performance.now() - started;
  // One cold pass (first touches of the pages, code not yet optimised): below the replay scoreboard's warm figures.
  const opsPerSecond = trace.opCount / (Math.max(elapsedMs, 0.001) / 1000);
  console.log(
    `trace replay: ${trace.name}, ${trace.opCount} operations (peak ${
      formatBytes(trace.peakLiveBytes)
    } live) in ${elapsedMs.toFixed(0)} ms (${(opsPerSecond / 1e6).toFixed(2)} M ops/s, fast path ${
      heap.fastPathActive ? "on" : "off"
    }), ${failed} failed`,
  );
}

const RESERVED_PREFIX = "reserved: ";

function pictureOf(
  normalized: NormalizedMemoryMap,
  memory: IdentityMemory,
  heap: PhysicalAllocator,
  title: string,
) {
  // The final spans, so reservations (the kernel image) and dropped pages show as such.
  const regions: PictureRegion[] = normalized.report.spans.map((span) => {
    if (span.disposition === "usable") {
      return { ...span, type: "usable", note: mappingLabel(memory, span.start, span.end) };
    }
    const type = span.disposition === "reserved" && span.type !== "usable"
      ? span.type
      : span.disposition;
    // A reservation's reason is "reserved: LABEL" (memory_map_normalize.ts): name it in the picture.
    const name = span.reason.startsWith(RESERVED_PREFIX)
      ? span.reason.slice(RESERVED_PREFIX.length)
      : undefined;
    return { start: span.start, end: span.end, type, note: span.reason, name };
  });
  // Blocks live at allocator addresses; draw them at their physical addresses.
  const blocks: PictureBlock[] = [];
  const offsetOf = (address: number) =>
    memory.mappings.find((m) => m.base <= address && address < m.base + m.lengthBytes)
      ?.offsetBytes ?? 0;
  // A chunk of the page-frame layer is one used block: draw its runs instead.
  const runs = [...heap.layerRuns()];
  const chunks = new Set(runs.map((run) => run.chunk));
  for (const block of heap.blocks()) {
    const offset = offsetOf(block.address);
    const chunk = !block.free && chunks.has(block.address + HEADER_BYTES);
    const sizeBytes = chunk ? HEADER_BYTES : block.sizeBytes;
    blocks.push({ address: block.address - offset, sizeBytes, free: block.free });
  }
  for (const run of runs) {
    const layer = run.kind === "pages" ? "frames" : run.kind === "slab" ? "slab" : undefined;
    const address = run.address - offsetOf(run.address);
    blocks.push({ address, sizeBytes: run.sizeBytes, free: run.kind === "free", layer });
  }
  return { regions, blocks, title };
}

function run(settings: Settings): void {
  const startRssBytes = Deno.memoryUsage().rss;
  const loaded = loadMap(settings);
  console.log(
    `memory map: ${loaded.source}; vm.mmap_min_addr 0x${loaded.mmapMinAddress.toString(16)}`,
  );
  const map = new MemoryMap(loaded.entries);
  if (settings.kernelBytes > 0) {
    map.reserve(settings.kernelStart, settings.kernelBytes, "kernel image");
  }
  const normalized = map.normalize({ mmapMinAddress: loaded.mmapMinAddress });
  if (normalized.usable.length === 0) {
    throw new Error("Cannot boot: the map has no usable memory left");
  }
  const mapStarted = performance.now();
  using memory = mapIdentity(normalized.usable);
  const relocatedCount = memory.mappings.filter((m) => m.kind === "relocated").length;
  console.log(
    `identity mapping: ${memory.mappings.length} regions, ${
      memory.mappings.length - relocatedCount
    } identity, ${relocatedCount} relocated; ` +
      `window ${formatBytes(memory.windowBytes)} at 0x${memory.windowBase.toString(16)} in ${
        (performance.now() - mapStarted).toFixed(1)
      } ms`,
  );
  printMapTable(normalized, memory);
  const heap = new PhysicalAllocator(memory, { policy: settings.policy });
  printStats(
    `allocator (${heap.policy}${heap.nativeActive ? ", native" : ""}) before`,
    heap.stats(),
  );
  earlyBoot(heap, memory, settings.pageCount);
  if (settings.trace !== undefined) {
    const name = settings.trace.split("/").pop()?.replace(/\.rep$/, "") ?? "trace";
    replay(heap, decodeTrace(parseRep(Deno.readTextFileSync(settings.trace)), name));
  }
  printStats("allocator after", heap.stats());
  heap.check();
  console.log("check(): ok, every header, footer, list link and bitmap is consistent");
  const picture = pictureOf(
    normalized,
    memory,
    heap,
    `Physical memory: ${loaded.source.split(" (")[0]}`,
  );
  if (settings.svg !== undefined) {
    const directory = settings.svg.includes("/")
      ? settings.svg.slice(0, settings.svg.lastIndexOf("/"))
      : ".";
    Deno.mkdirSync(directory, { recursive: true });
    Deno.writeTextFileSync(settings.svg, renderMemorySvg(picture, { axis: settings.axis }));
    console.log(
      `svg: wrote ${settings.svg} (${picture.blocks.length} blocks over ${picture.regions.length} regions)`,
    );
  }
  console.log(
    renderMemoryTerminal(picture, {
      widthColumns: settings.widthColumns,
      color: settings.color,
      axis: settings.axis,
    }),
  );
  const mappedBytes = memory.mappings.reduce((sum, m) => sum + m.lengthBytes, 0);
  console.log(
    `resident memory (RSS): ${formatBytes(Deno.memoryUsage().rss)} at the end, ${
      formatBytes(startRssBytes)
    } at the start, with ${formatBytes(mappedBytes)} mapped: only touched pages cost memory`,
  );
  heap.close();
}

/**
 * Runs the demo.
 *
 * @param args The command-line arguments.
 * @returns The exit code: 0 on success, 1 on an error, 2 on a usage mistake.
 */
export function main(args: readonly string[]): number {
  let settings: Settings | "help";
  try {
    settings = parseSettings(args);
  } catch (error) {
    console.error(`boot_demo: ${(error as Error).message} (see --help)`);
    return 2;
  }
  if (settings === "help") {
    console.log(HELP);
    return 0;
  }
  try {
    run(settings);
    return 0;
  } catch (error) {
    const message = error instanceof AllocatorError
      ? `${error.name} ${error.code}: ${error.message}`
      : (error as Error).message;
    console.error(`boot_demo: ${message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(main(Deno.args));
