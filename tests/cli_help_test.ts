/**
 * The command lines' help, run as a user would: without `-A` (help must not
 * need the npm peer or any permission), `--help` and `-h` on every command.
 */
import assert from "#assert";
import { CHECK_EVERY_DEFAULT } from "../tools/fuzz.ts";
import { runDeno } from "./support/run_deno.ts";

const FUZZ = new URL("../tools/fuzz.ts", import.meta.url).pathname;
const TRACE_MAIN = new URL("../tools/trace/main.ts", import.meta.url).pathname;

function run(permissions: string[], script: string, args: string[]) {
  return runDeno(["run", "--no-prompt", ...permissions, script, ...args]);
}

/** Every flag a command's parser takes, as its help must list it. */
const FLAGS = {
  capture: ["--out", "--children", "--pid", "--keep-logs", "--show-output", "--from-log", "--help"],
  replay: ["--policy", "--native", "--backend", "--heap-bytes", "--help"],
  score: [
    "--policies",
    "--paths",
    "--backend",
    "--peers",
    "--json",
    "--json-out",
    "--svg",
    "--budget-ms",
    "--heap-bytes",
    "--quiet",
    "--help",
  ],
};

Deno.test("main.ts COMMAND --help describes every flag of that command, without permissions", async () => {
  for (const [command, flags] of Object.entries(FLAGS)) {
    for (const help of ["--help", "-h"]) {
      const result = await run([], TRACE_MAIN, [command, help]);
      assert.equal(result.code, 0, `${command} ${help}: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^usage: (main\\.ts )?${command} `));
      for (const flag of flags) {
        assert.match(
          result.stdout,
          new RegExp(`\\n\\s+(-\\w, )?${flag}\\b`),
          `${command}: ${flag}`,
        );
      }
    }
  }
  const score = await run([], TRACE_MAIN, ["score", "--help"]);
  assert.match(score.stdout, /rlsf, talc/);
});

Deno.test("main.ts without a command prints the usage, not an unknown command", async () => {
  const result = await run([], TRACE_MAIN, []);
  assert.equal(result.code, 2);
  assert.match(result.stdout, /^usage: .*main\.ts COMMAND/);
  assert.match(result.stdout, /capture .*\n.*replay .*\n.*score /);
  assert.ok(!result.stderr.includes("unknown command"), result.stderr);
  const top = await run([], TRACE_MAIN, ["--help"]);
  assert.equal(top.code, 0);
  assert.equal(top.stdout, result.stdout);
  const unknown = await run([], TRACE_MAIN, ["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^unknown command 'frobnicate'/);
});

Deno.test("fuzz.ts --help and -h print the usage with the real defaults and exit 0", async () => {
  for (const help of ["--help", "-h"]) {
    const result = await run([], FUZZ, [help]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^usage: deno task fuzz/);
    assert.match(result.stdout, /--seed S .*\(default 1\)/);
    assert.match(result.stdout, /--ops N .*\(default 100000\)/);
    assert.match(result.stdout, /--policy P .*\(default all\)/);
    assert.match(result.stdout, /--path P .*\(default both\)/);
    assert.match(
      result.stdout,
      new RegExp(`--check-every K .*\\(default ${CHECK_EVERY_DEFAULT}\\)`),
    );
    assert.match(result.stdout, /--shrink-seconds T .*\(default 60\)/);
  }
});

Deno.test("fuzz.ts without --allow-ffi says so, not that the library is not built", async () => {
  const result = await run(["--allow-read"], FUZZ, ["--ops", "10", "--path", "native"]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /FFI permission not granted \(run with --allow-ffi\)/);
  assert.match(result.stderr, /or pass --path ts/);
  // With the permission and --path ts, the same run passes.
  const ts = await run(["--allow-read", "--allow-ffi"], FUZZ, ["--ops", "200", "--path", "ts"]);
  assert.equal(ts.code, 0, ts.stderr);
  assert.match(ts.stdout, /0 failures/);
});

Deno.test("main.ts score without cargo skips rlsf and talc with a one-line note", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tiny.rep`, "0\n1\n2\n1\na 0 8\nf 0\n");
    const { code, stdout, stderr } = await runDeno([
      "run",
      "-A",
      TRACE_MAIN,
      "score",
      ...["--policies", "tlsf", "--peers", "rlsf,talc", "--budget-ms", "5", "--quiet"],
      `${dir}/tiny.rep`,
    ], { env: { PATH: dir } }); // an empty folder: no cargo
    assert.equal(code, 0, stderr);
    assert.match(stderr, /^rlsf and talc skipped: cannot run cargo \(.+\)\n$/);
    assert.match(stdout, /\ntiny +2 +tlsf /);
    assert.ok(!/rlsf|talc/.test(stdout), stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
