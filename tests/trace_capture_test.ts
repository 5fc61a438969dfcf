import assert from "#assert";
import { captureMain, captureTrace } from "../tools/trace/capture.ts";
import { decodeTrace } from "../tools/trace/decode.ts";
import { parseRep } from "../tools/trace/rep_format.ts";

async function hasValgrind(): Promise<boolean> {
  try {
    const output = await new Deno.Command("valgrind", { args: ["--version"] }).output();
    return output.success;
  } catch {
    return false;
  }
}

const valgrindMissing = !(await hasValgrind());

Deno.test({
  name: "captureTrace() turns a real program's allocations into a replayable trace",
  ignore: valgrindMissing,
  async fn() {
    const result = await captureTrace({ command: ["ls", "-la", "/"] });
    assert.equal(result.exitCode, 0);
    assert.equal(result.processes.length, 1);
    assert.ok(result.trace.opCount > 50, `only ${result.trace.opCount} operations`);
    const decoded = decodeTrace(result.trace, "ls");
    assert.ok(decoded.peakLiveBytes > 0);
  },
});

Deno.test({
  name: "captureMain() writes a .rep file and keeps the largest child process",
  ignore: valgrindMissing,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const out = `${dir}/sh.rep`;
      const code = await captureMain(["--out", out, "--children", "--", "sh", "-c", "ls / | sort"]);
      assert.equal(code, 0);
      const trace = parseRep(await Deno.readTextFile(out));
      assert.ok(trace.opCount > 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("captureMain() exits 2 without --out or a command, and 1 on an unreadable log", async () => {
  assert.equal(await captureMain(["--", "ls"]), 2);
  assert.equal(await captureMain(["--out", "/tmp/never.rep"]), 2);
  assert.equal(await captureMain(["--out", "/tmp/never.rep", "--from-log", "/no/such/log"]), 1);
});
