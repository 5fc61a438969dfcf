/**
 * What the seventh adversarial round found, fixed: each test failed (hung or
 * crashed) before its fix. The native library's loader given a FIFO or a
 * library cut short, a free list linking to a used block, and forged words in
 * the control block, and `null` taken as the default for some options.
 */
import assert from "node:assert/strict";
import {
  AllocatorError,
  HeapCorruptionError,
  NativeUnavailableError,
  PhysicalAllocator,
} from "../mod.ts";
import { loadNative } from "../native/loader.ts";

const LOCAL_BUILD = new URL("../zig-out/lib/libpma.so", import.meta.url);

Deno.test({
  name: "the native loader refuses a FIFO and a library cut short instead of hanging or crashing",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const directory = Deno.makeTempDirSync();
    try {
      const fifo = `${directory}/libpma-fifo.so`;
      const made = await new Deno.Command("mkfifo", { args: [fifo] }).output();
      assert.ok(made.success, "mkfifo");
      const whole = Deno.readFileSync(LOCAL_BUILD);
      const cut = `${directory}/libpma-cut.so`;
      Deno.writeFileSync(cut, whole.subarray(0, 8192));
      for (const [path, reason] of [[fifo, "not a regular file"], [cut, "cut short"]]) {
        const only = [{ source: "test", path }];
        assert.equal(loadNative("auto", only), null, path);
        assert.throws(() => loadNative(true, only), NativeUnavailableError, reason);
      }
    } finally {
      Deno.removeSync(directory, { recursive: true });
    }
  },
});

/** A 64 KiB heap at 0x1000 of `policy`, with every other of 80 small blocks freed. */
function holey(policy: "tlsf" | "first-fit", native: boolean) {
  const buffer = new Uint8Array(65536);
  const heap = PhysicalAllocator.fromBuffer(buffer, { policy, native, layers: false });
  const live: number[] = [];
  for (let i = 0; i < 80; i++) live.push(heap.alloc(24 + (i % 4) * 8));
  for (let i = 0; i < 80; i += 2) heap.free(live[i]);
  return { buffer, heap, live, view: new DataView(buffer.buffer) };
}

Deno.test("a free list linking to a used block is corruption, on the TS and the native path alike", () => {
  for (const native of [false, true]) {
    const { heap, live, view } = holey("first-fit", native);
    const blocks = [...heap.blocks()];
    const free = blocks.filter((b) => b.free);
    const used = blocks.filter((b) => !b.free);
    view.setUint32(free[10].address - 0x1000 + 16, used[7].address, true); // next := a used block
    assert.throws(() => heap.alloc(60000), HeapCorruptionError, `native ${native}`);
    assert.throws(() => heap.realloc(live[1], 60000), HeapCorruptionError, `native ${native}`);
    assert.throws(() => heap.check(), HeapCorruptionError, `native ${native}`);
  }
});

Deno.test("check() proves the control block's words; the native path calls a forged one corruption", () => {
  const cases = [
    { policy: "first-fit", offset: 0 },
    { policy: "first-fit", offset: 4 },
    { policy: "first-fit", offset: 28 },
    { policy: "tlsf", offset: 0 },
    { policy: "tlsf", offset: 8 },
  ] as const;
  for (const { policy, offset } of cases) {
    for (const native of [false, true]) {
      const { heap, view } = holey(policy, native);
      view.setUint32(offset, view.getUint32(offset, true) ^ 0x10, true);
      const what = `${policy}, native ${native}, word at ${offset}`;
      assert.throws(() => heap.check(), HeapCorruptionError, what);
      if (native && offset !== 28) {
        assert.throws(() => heap.alloc(3000), HeapCorruptionError, what);
      }
    }
  }
});

Deno.test("null for any option is refused, as it was for the boolean ones", () => {
  for (const name of ["policy", "align", "native", "baseAddress", "debug", "layers", "fastPath"]) {
    assert.throws(
      () => PhysicalAllocator.fromBuffer(new Uint8Array(1 << 16), { [name]: null }),
      (error: unknown) => error instanceof AllocatorError && /null/.test(error.message),
      name,
    );
  }
  const heap = PhysicalAllocator.fromBuffer(new Uint8Array(4 << 20));
  assert.throws(() => heap.createCache("inode", 64, { align: null as never }), AllocatorError);
  heap.close();
});
