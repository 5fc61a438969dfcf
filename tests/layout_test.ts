import assert from "#assert";
import * as layout from "../allocator/heap/layout.ts";
import { alignUp } from "../allocator/_math.ts";
import { blockPtr } from "../allocator/heap/block.ts";
import { LAYOUT_VALUE_NAMES } from "../native/symbols.ts";
import { Random } from "./support/random.ts";
import { nativeOrSkip } from "./support/native_library.ts";

const native = nativeOrSkip("tests/layout_test.ts (TS and Zig layout agreement)");
const numericConstants = Object.entries(layout).filter(([, value]) => typeof value === "number");

Deno.test("LAYOUT_VALUE_NAMES lists every numeric constant of allocator/heap/layout.ts once", () => {
  const names = new Set<string>(LAYOUT_VALUE_NAMES);
  assert.equal(names.size, LAYOUT_VALUE_NAMES.length);
  assert.deepEqual([...names].sort(), numericConstants.map(([name]) => name).sort());
});

Deno.test({
  name: "pma_layout_value() agrees with allocator/heap/layout.ts constant by constant",
  ignore: native === null,
  fn() {
    const values = layout as unknown as Record<string, number>;
    LAYOUT_VALUE_NAMES.forEach((name, id) => {
      assert.equal(native!.pma_layout_value(id), values[name], `${name} (id ${id})`);
    });
    assert.ok(Number.isNaN(native!.pma_layout_value(LAYOUT_VALUE_NAMES.length)));
  },
});

Deno.test({
  name: "pma_control_heads_offset() and pma_control_bytes() agree for every first-level count",
  ignore: native === null,
  fn() {
    for (let flCount = 0; flCount <= layout.FL_COUNT_MAX; flCount++) {
      assert.equal(native!.pma_control_heads_offset(flCount), layout.controlHeadsOffset(flCount));
      assert.equal(native!.pma_control_bytes(flCount), layout.controlBytes(flCount));
    }
  },
});

Deno.test({
  name: "pma_header_check() agrees with headerCheck() on 100000 random headers",
  ignore: native === null,
  fn() {
    const random = new Random(0x5eed);
    const word = () => random.int(0, 0xffffffff);
    const edges = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff];
    for (let i = 0; i < 100_000; i++) {
      const address = i % 2 === 0 ? random.int(0, 2 ** 32 - 1) * 8 : random.int(0, 2 ** 50 - 1) * 8;
      const [word0, word1, slack] = i < 125
        ? [edges[i % 5], edges[Math.floor(i / 5) % 5], edges[Math.floor(i / 25) % 5]]
        : [word(), word(), word()];
      const key = i % 3 === 0 ? edges[i % 5] : word();
      const expected = layout.headerCheck(address, word0, word1, slack, key);
      const actual = native!.pma_header_check(address, word0, word1, slack, key);
      if (actual !== expected) {
        assert.fail(
          `headerCheck(${address}, ${word0}, ${word1}, ${slack}, ${key}): ${actual} != ${expected}`,
        );
      }
    }
  },
});

Deno.test({
  name: "pma_align_up() and pma_block_ptr() agree with alignUp() and blockPtr()",
  ignore: native === null,
  fn() {
    const random = new Random(42);
    for (let i = 0; i < 10_000; i++) {
      const alignBytes = 2 ** random.int(0, 30);
      const value = random.int(0, 2 ** 40);
      assert.equal(native!.pma_align_up(value, alignBytes), alignUp(value, alignBytes));
      const block = random.int(1, 2 ** 49) * 8;
      assert.equal(native!.pma_block_ptr(block), blockPtr(block));
    }
  },
});
