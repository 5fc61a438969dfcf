import assert from "#assert";
import { type DenoRun, runDeno } from "./support/run_deno.ts";

const ROOT = new URL("../", import.meta.url);
const FIXTURES = new URL("./fixtures/", import.meta.url);

/** The `deno task demo` command line from deno.json, so the test runs exactly the task's flags. */
function demoCommand(): string[] {
  const config = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)));
  const words = String(config.tasks.demo).split(/\s+/);
  assert.equal(words[0], "deno");
  return words.slice(1);
}

function runDemo(...args: string[]): Promise<DenoRun> {
  return runDeno([...demoCommand(), ...args], { cwd: ROOT });
}

function assertOneLineError(run: DenoRun, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, run.stderr);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line of error, got:\n${run.stderr}`);
  assert.match(lines[0], /^boot_demo: /);
  assert.match(lines[0], pattern);
}

Deno.test("boot_demo --help documents every flag and exits 0", async () => {
  const run = await runDemo("--help");
  assert.equal(run.code, 0);
  const flags = [
    "--map",
    "--format",
    "--sample",
    "--kernel-start",
    "--kernel-size",
    "--mmap-min-addr",
    "--pages",
    "--trace",
    "--policy",
    "--svg",
    "--axis",
    "--width",
    "--color",
    "--help",
  ];
  for (const flag of flags) assert.match(run.stdout, new RegExp(`^ +(-h, )?${flag}\\b`, "m"), flag);
  assert.match(run.stdout, /qemu, fragmented/);
});

Deno.test("boot_demo rejects wrong flags with a one-line error and exit code 2", async () => {
  assertOneLineError(await runDemo("--bogus"), 2, /--bogus/);
  assertOneLineError(await runDemo("--sample", "bochs"), 2, /Invalid --sample "bochs"/);
  assertOneLineError(
    await runDemo("--sample", "qemu", "--map", "x.json"),
    2,
    /--map and --sample together/,
  );
  assertOneLineError(await runDemo("--pages", "many"), 2, /Invalid --pages "many"/);
  assertOneLineError(await runDemo("--policy", "best-fit"), 2, /expected one of tlsf, first-fit/);
  assertOneLineError(await runDemo("extra"), 2, /extra/);
  assertOneLineError(await runDemo("--axis", "sqrt"), 2, /Invalid --axis "sqrt"/);
});

Deno.test("boot_demo reports a bad map file in one line with exit code 1", async () => {
  assertOneLineError(await runDemo("--map", "/nonexistent/map.json"), 1, /nonexistent/);
  const file = Deno.makeTempFileSync({ suffix: ".txt" });
  try {
    Deno.writeTextFileSync(file, "BIOS-e820: [mem 0x2000-0x1fff] usable\n");
    assertOneLineError(
      await runDemo("--map", file),
      1,
      /MEMORY_MAP_INVALID: Cannot parse line 1: end 0x1fff is before start 0x2000/,
    );
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("boot_demo boots the qemu sample end to end and writes the SVG", async () => {
  const directory = Deno.makeTempDirSync();
  try {
    const svgPath = `${directory}/pictures/qemu.svg`;
    // The sample's 3 GiB region needs the process's address space free from 1 MiB up; now and
    // then the runtime has put a mapping there, and the demo relocates that region (and says so).
    // Every run must map all 4 regions; one of at most 3 runs must map them all at identity.
    let run = await runDemo("--sample", "qemu", "--svg", svgPath, "--color", "never");
    for (let attempt = 1; attempt < 3 && !/ 4 identity, 0 relocated/.test(run.stdout); attempt++) {
      assert.match(run.stdout, /^identity mapping: 4 regions, [0-4] identity, [0-4] relocated/m);
      run = await runDemo("--sample", "qemu", "--svg", svgPath, "--color", "never");
    }
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "");
    for (
      const pattern of [
        /^memory map: sample "qemu"/m,
        /^identity mapping: 4 regions, 4 identity, 0 relocated/m,
        /0x0100000000 +0x013fffffff +1 GiB +usable +identity/,
        /reserved +32 MiB +reserved: kernel image/,
        /^allocator \(tlsf.*\) before: total 4 GiB/m,
        /^early boot: 512 page-aligned 4 KiB pages/m,
        /^trace replay: git, 133050 operations .* in \d+ ms \(\d+\.\d\d M ops\/s, fast path (on|off)\), 0 failed$/m,
        /^allocator after: /m,
        /^check\(\): ok/m,
        /^resident memory \(RSS\): /m,
      ]
    ) assert.match(run.stdout, pattern);
    const svg = Deno.readTextFileSync(svgPath);
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
    assert.ok(svg.trimEnd().endsWith("</svg>"));
    assert.ok((svg.match(/class="block used"/g)?.length ?? 0) > 100);
    // The kernel image reservation is named, in the picture and in the terminal view.
    assert.match(svg, />0x1000000 32 MiB kernel image<\/text>/);
    assert.match(run.stdout, /0x1000000 +32 MiB kernel image /);
  } finally {
    Deno.removeSync(directory, { recursive: true });
  }
});

Deno.test("boot_demo reads --map files in all three formats", async () => {
  const files = ["memory_map_qemu.json", "e820_dmesg_host.txt", "sysfs_memmap_host.txt"];
  const formats = ["json", "e820", "sysfs"];
  for (const [index, name] of files.entries()) {
    const path = new URL(name, FIXTURES).pathname;
    const run = await runDemo("--map", path, "--trace", "none", "--pages", "16", "--svg", "none");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, new RegExp(`memory map: .*${name} \\(${formats[index]}\\)`));
    assert.match(run.stdout, /^check\(\): ok/m);
    assert.doesNotMatch(run.stdout, /^svg: /m);
  }
});

const hostMapPresent = Deno.build.os === "linux" && (() => {
  try {
    return Deno.statSync("/sys/firmware/memmap").isDirectory;
  } catch (error) {
    return error instanceof Deno.errors.NotCapable; // Deno refuses /sys without --allow-all
  }
})();
if (!hostMapPresent) {
  console.log("boot_demo_test: no /sys/firmware/memmap, host-map run is skipped");
}

Deno.test({
  name: "boot_demo identity-maps this machine's own map with small resident memory",
  ignore: !hostMapPresent,
  async fn() {
    const run = await runDemo("--svg", "none", "--color", "never");
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^memory map: this machine's \/sys\/firmware\/memmap/m);
    assert.match(run.stdout, /^identity mapping: \d+ regions, \d+ identity, \d+ relocated/m);
    assert.match(run.stdout, /^check\(\): ok/m);
    const rss = /resident memory \(RSS\): ([\d.]+) (MiB|GiB) at the end/.exec(run.stdout);
    assert.ok(rss !== null, run.stdout);
    const rssMib = Number(rss[1]) * (rss[2] === "GiB" ? 1024 : 1);
    assert.ok(rssMib < 512, `resident memory ${rss[0]}`);
  },
});
