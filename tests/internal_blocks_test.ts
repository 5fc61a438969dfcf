import assert from "#assert";
import { InternalBlocks } from "../allocator/slab/internal_blocks.ts";

Deno.test("InternalBlocks.has() answers exactly, also for addresses sharing a filter bucket", () => {
  const blocks = new InternalBlocks();
  const member = 0x10_0000_1008; // above 2^32: the bucket comes from the low bits
  const sameBucket = member + (1 << 17); // 2^14 buckets of 8 bytes: the same bucket
  blocks.add(member);
  blocks.add(member);
  assert.equal(blocks.size, 1);
  assert.equal(blocks.has(member), true);
  assert.equal(blocks.has(sameBucket), false);
  assert.equal(blocks.has(member + 8), false);
  blocks.add(sameBucket);
  blocks.delete(member);
  blocks.delete(member);
  assert.equal(blocks.has(member), false);
  assert.equal(blocks.has(sameBucket), true);
  blocks.delete(sameBucket);
  assert.equal(blocks.size, 0);
  assert.equal(blocks.has(sameBucket), false);
});

Deno.test("InternalBlocks.has() refuses non-numbers without converting them", () => {
  const blocks = new InternalBlocks();
  blocks.add(4096);
  let converted = false;
  const sneaky = { valueOf: () => (converted = true, 4096) };
  for (const value of [sneaky, Symbol("x"), 4096n, "4096", null, undefined]) {
    assert.equal(blocks.has(value as unknown as number), false);
  }
  assert.equal(converted, false);
  assert.equal(blocks.has(4096), true);
});
