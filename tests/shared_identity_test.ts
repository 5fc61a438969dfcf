/**
 * What identity-mapped memory offers Workers (the README's "Shared heaps"
 * section relies on these facts): the mapping is process-wide, each Worker
 * gets its own non-shared ArrayBuffer over it from
 * `Deno.UnsafePointerView.getArrayBuffer`, `Atomics` read-modify-write
 * operations on those buffers are atomic across Workers, and
 * `Atomics.wait` refuses them (it needs a SharedArrayBuffer).
 */
import assert from "node:assert/strict";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  openLibc,
  PROT_READ,
  PROT_WRITE,
} from "../allocator/memory/_libc.ts";

const WORKER_SOURCE = `
self.onmessage = (event) => {
  const { address, rounds } = event.data;
  const pointer = Deno.UnsafePointer.create(BigInt(address));
  const words = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(pointer, 4096));
  Atomics.add(words, 3, 1);
  while (Atomics.load(words, 3) < 2);
  for (let i = 0; i < rounds; i++) {
    Atomics.add(words, 0, 1);
    while (Atomics.compareExchange(words, 1, 0, 1) !== 0);
    words[2]++;
    Atomics.store(words, 1, 0);
  }
  self.postMessage("done");
};`;

Deno.test("identity memory: Atomics work across Workers over UnsafePointerView buffers, Atomics.wait does not", async () => {
  const libc = openLibc();
  const bytes = 4096n;
  const pointer = libc.symbols.mmap(
    null,
    bytes,
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS,
    -1,
    0n,
  );
  assert.ok(pointer !== null);
  const workers: Worker[] = [];
  try {
    const words = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(pointer, 4096));
    assert.equal(words.buffer instanceof SharedArrayBuffer, false);
    assert.throws(() => Atomics.wait(words, 0, 0, 1), TypeError);
    const address = Number(Deno.UnsafePointer.value(pointer));
    const rounds = 200_000;
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < 2; i++) {
      const worker = new Worker(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`, {
        type: "module",
      });
      workers.push(worker);
      done.push(new Promise((resolve) => (worker.onmessage = resolve)));
      worker.postMessage({ address, rounds });
    }
    await Promise.all(done);
    assert.equal(words[0], 2 * rounds, "Atomics.add lost no update");
    assert.equal(words[2], 2 * rounds, "a compareExchange spin lock protected plain increments");
  } finally {
    for (const worker of workers) worker.terminate();
    libc.symbols.munmap(pointer, bytes);
    libc.close();
  }
});
