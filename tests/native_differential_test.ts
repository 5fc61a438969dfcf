/**
 * The point of the native path's design: the same seeded operations on the
 * TS path and the native path give identical addresses, identical stats and
 * byte-identical heap memory after every step, for every policy.
 */
import assert from "#assert";
import { withHeaderKey } from "../allocator/heap/_header_key.ts";
import {
  type AddressRange,
  bufferMemory,
  PhysicalAllocator,
  POLICY_NAMES,
  type PolicyName,
} from "../mod.ts";
import { loadNative } from "../native/loader.ts";
import { defineConformanceSuite, runModel } from "./support/conformance.ts";
import { Random } from "./support/random.ts";

const native = loadNative("auto");
if (native === null && Deno.env.get("CI") === "true") {
  throw new Error(
    "The native library is missing in CI: build it with `bash tools/zig.sh build -Doptimize=ReleaseFast`",
  );
}
if (native === null) {
  console.warn("SKIPPED native differential tests: zig-out/lib/libpma.so is not built");
}

const LAYOUTS: Record<string, AddressRange[]> = {
  "one region": [{ start: 0x10000, length: 512 * 1024 }],
  "three regions, odd bases": [
    { start: 0x1000, length: 30 },
    { start: 0x2003, length: 50_000 },
    { start: 0x40000, length: 300_000 },
  ],
  "above 4 GiB": [{ start: 2 ** 32 + 0x10000, length: 256 * 1024 }],
  "128 small regions": Array.from({ length: 128 }, (_, i) => ({
    start: 0x100000 + i * 4096,
    length: 300 + 23 * i,
  })),
};

/** Runs `steps` seeded operations on both paths, comparing after every step. */
function runDifferential(policy: PolicyName, ranges: AddressRange[], seed: number, steps: number) {
  const tsMemory = bufferMemory(ranges);
  const nativeMemory = bufferMemory(ranges);
  // One header key for both, so that equal decisions write equal bytes.
  const [ts, nat] = withHeaderKey(0x5eed1234, () => [
    new PhysicalAllocator(tsMemory, { policy, native: false }),
    new PhysicalAllocator(nativeMemory, { policy, native: true }),
  ]);
  assert.ok(nat.nativeActive);
  const tsBytes = new Uint8Array(tsMemory.regions[0].bytes.buffer);
  const nativeBytes = new Uint8Array(nativeMemory.regions[0].bytes.buffer);
  const random = new Random(seed);
  const live: number[] = [];
  for (let step = 0; step < steps; step++) {
    const roll = random.next();
    let tsResult: number;
    let nativeResult: number;
    if (roll < 0.55 || live.length === 0) {
      const size = random.next() < 0.9 ? random.int(1, 300) : random.int(300, 20_000);
      const align = random.next() < 0.7 ? 8 : 2 ** random.int(0, 14);
      tsResult = ts.tryAlloc(size, align);
      nativeResult = nat.tryAlloc(size, align);
      if (tsResult !== 0) {
        live.push(tsResult);
        ts.bytes(tsResult).fill(step & 0xff);
        if (nativeResult === tsResult) nat.bytes(nativeResult).fill(step & 0xff);
      }
    } else if (roll < 0.85) {
      const index = random.int(0, live.length - 1);
      const address = live[index];
      live.splice(index, 1);
      ts.free(address);
      nat.free(address);
      tsResult = nativeResult = address;
    } else {
      const index = random.int(0, live.length - 1);
      const size = random.int(1, 3000);
      tsResult = attempt(() => ts.realloc(live[index], size));
      nativeResult = attempt(() => nat.realloc(live[index], size));
      if (tsResult !== 0) live[index] = tsResult;
    }
    if (tsResult !== nativeResult) {
      assert.fail(`step ${step}: TS returned ${tsResult}, native returned ${nativeResult}`);
    }
    assert.deepEqual(nat.stats(), { ...ts.stats(), nativeActive: true }, `stats at step ${step}`);
    if (step % 16 === 0 || step === steps - 1) {
      if (!equalBytes(tsBytes, nativeBytes)) assert.fail(`heap bytes differ after step ${step}`);
      ts.check();
      nat.check();
    }
  }
}

function attempt(operation: () => number): number {
  try {
    return operation();
  } catch (error) {
    assert.equal((error as { code?: string }).code, "OUT_OF_MEMORY");
    return 0;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

for (const policy of POLICY_NAMES) {
  Deno.test({
    name: `PhysicalAllocator (${policy}) gives identical results on the TS and native paths`,
    ignore: native === null,
    fn: async (t) => {
      let seed = 1;
      for (const [name, ranges] of Object.entries(LAYOUTS)) {
        await t.step(name, () => runDifferential(policy, ranges, seed++, 6000));
      }
    },
  });
  Deno.test({
    name: `PhysicalAllocator (${policy}, native) survives 30k random operations against a model`,
    ignore: native === null,
    fn: () => runModel({ policy, native: true }, 7, 30_000),
  });
}

if (native !== null) {
  defineConformanceSuite("tlsf, native", { policy: "tlsf", native: true });
  defineConformanceSuite("first-fit, native", { policy: "first-fit", native: true });
}
