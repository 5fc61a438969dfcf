import assert from "#assert";
import { alignDown, alignUp } from "../allocator/_math.ts";
import {
  alignmentGap,
  blockSizeFor,
  BlockWords,
  blockWordsFor,
  NarrowBlockWords,
} from "../allocator/heap/block.ts";
import {
  FLAG_FREE,
  FLAG_LAST,
  FLAG_PREV_FREE,
  HEADER_BYTES,
  headerCheck,
  MIN_BLOCK_BYTES,
} from "../allocator/heap/layout.ts";
import { Random } from "./support/random.ts";

/** Any key: a non-zero one proves it is mixed in. */
const TEST_KEY = 0x5eed1234;

Deno.test("alignUp() and alignDown() agree with the modulo definition for any size", () => {
  const random = new Random(11);
  for (let i = 0; i < 20_000; i++) {
    const align = 2 ** random.int(0, 30);
    const value = random.next() < 0.5 ? random.int(0, 2 ** 31) : random.int(0, 2 ** 52);
    const up = alignUp(value, align);
    assert.equal(up % align, 0);
    assert.ok(up >= value && up - value < align, `alignUp(${value}, ${align}) = ${up}`);
    const down = alignDown(value, align);
    assert.ok(down <= value && value - down < align && down % align === 0);
  }
});

Deno.test("blockSizeFor() holds the payload and the header in a granule multiple", () => {
  for (let size = 1; size < 2000; size++) {
    const block = blockSizeFor(size);
    assert.ok(block >= size + HEADER_BYTES && block >= MIN_BLOCK_BYTES);
    assert.equal(block % 8, 0);
    assert.ok(block < Math.max(size + HEADER_BYTES + 8, MIN_BLOCK_BYTES + 1));
  }
});

Deno.test("alignmentGap() is 0 or big enough for a free block, and aligns the payload", () => {
  for (let block = 0x1000; block < 0x1400; block += 8) {
    for (const align of [16, 32, 64, 4096]) {
      const gap = alignmentGap(block, align);
      assert.ok(gap === 0 || gap >= MIN_BLOCK_BYTES, `gap ${gap} at ${block}`);
      assert.equal((block + gap + HEADER_BYTES) % align, 0);
      assert.ok(gap < MIN_BLOCK_BYTES + align);
    }
  }
});

Deno.test("blockWordsFor() picks narrow access below 2^31 and the same bytes either way", () => {
  const narrowBuffer = new ArrayBuffer(4096);
  const wideBuffer = new ArrayBuffer(4096);
  const narrow = blockWordsFor(new Uint8Array(narrowBuffer), 0x1000, TEST_KEY);
  const wide = new BlockWords(new Uint8Array(wideBuffer), 0x1000, TEST_KEY);
  assert.ok(narrow instanceof NarrowBlockWords);
  assert.ok(
    !(blockWordsFor(new Uint8Array(wideBuffer), 2 ** 31, TEST_KEY) instanceof NarrowBlockWords),
  );
  for (const words of [narrow, wide]) {
    words.writeFree(0x1000, 256, FLAG_PREV_FREE | FLAG_LAST);
    words.setNext(0x1000, 0x1200);
    words.setPrev(0x1000, 0x1100);
    words.writeHeader(0x1100, 64, 0, 3);
  }
  assert.deepEqual(new Uint8Array(narrowBuffer), new Uint8Array(wideBuffer));
  assert.equal(narrow.size(0x1000), 256);
  assert.equal(narrow.flags(0x1000), FLAG_FREE | FLAG_PREV_FREE | FLAG_LAST);
  assert.equal(narrow.previousFooter(0x1100), 256);
  assert.equal(narrow.next(0x1000), 0x1200);
  assert.equal(narrow.slack(0x1100), 3);
  assert.ok(narrow.headerValid(0x1000) && narrow.headerValid(0x1100));
});

Deno.test("BlockWords keeps sizes and links above 2^32 exactly", () => {
  const blocks = new BlockWords(new Uint8Array(256), 2 ** 40, TEST_KEY);
  blocks.writeFree(2 ** 40, 2 ** 36 + 64, FLAG_LAST);
  assert.equal(blocks.size(2 ** 40), 2 ** 36 + 64);
  blocks.setNext(2 ** 40, 2 ** 52 + 8);
  assert.equal(blocks.next(2 ** 40), 2 ** 52 + 8);
  assert.ok(blocks.headerValid(2 ** 40));
});

Deno.test("BlockWords.setFlag() keeps the check word valid and headerValid() catches any flip", () => {
  const blocks = blockWordsFor(new Uint8Array(256), 0x1000, TEST_KEY);
  blocks.writeHeader(0x1000, 128, 0, 5);
  blocks.setFlag(0x1000, FLAG_PREV_FREE, true);
  assert.ok(blocks.headerValid(0x1000));
  assert.equal(blocks.flags(0x1000), FLAG_PREV_FREE);
  for (let bit = 0; bit < 128; bit++) {
    blocks.words[bit >>> 5] ^= 1 << (bit & 31);
    assert.ok(!blocks.headerValid(0x1000), `flipping header bit ${bit} went unnoticed`);
    blocks.words[bit >>> 5] ^= 1 << (bit & 31);
  }
  assert.equal(blocks.words[3], headerCheck(0x1000, blocks.words[0], 0, 5, TEST_KEY));
});

Deno.test("BlockWords.headerValid() refuses a header written under another key", () => {
  const window = new Uint8Array(256);
  blockWordsFor(window, 0x1000, TEST_KEY).writeHeader(0x1000, 128, 0, 5);
  assert.ok(blockWordsFor(window, 0x1000, TEST_KEY).headerValid(0x1000));
  for (const other of [0, TEST_KEY ^ 1, TEST_KEY ^ 0x80000000]) {
    assert.ok(!blockWordsFor(window, 0x1000, other).headerValid(0x1000), `key ${other}`);
  }
});
