import assert from "#assert";
import { classOf, flCountFor, floorLog2, searchClassOf } from "../allocator/heap/policy/tlsf.ts";
import { SL_COUNT } from "../allocator/heap/layout.ts";
import { Random } from "./support/random.ts";

/** The smallest size of a class (the class's lower bound). */
function classLowBytes(sizeClass: number): number {
  let low = 8;
  while (classOf(low) < sizeClass) low += 8;
  return low;
}

Deno.test("classOf() is monotonic and splits each power of two into 16 classes", () => {
  let previous = 0;
  for (let size = 40; size < 1 << 16; size += 8) {
    const sizeClass = classOf(size);
    assert.ok(sizeClass >= previous, `classOf(${size}) went down`);
    previous = sizeClass;
  }
  assert.equal(classOf(128) - classOf(64), SL_COUNT / 2 + 0);
  assert.equal(classOf(1 << 20) - classOf(1 << 19), SL_COUNT);
});

Deno.test("searchClassOf() only names classes whose every block is large enough", () => {
  const random = new Random(3);
  for (let i = 0; i < 2000; i++) {
    const size = 8 * random.int(5, 1 << 17);
    const search = searchClassOf(size);
    assert.ok(classLowBytes(search) >= size, `class ${search} starts below ${size}`);
    assert.ok(search - classOf(size) <= 1);
  }
});

Deno.test("classOf() agrees across the 32-bit and the general paths near 2^31", () => {
  for (const size of [2 ** 31 - 8, 2 ** 31, 2 ** 31 + 2 ** 27, 2 ** 33 + 8, 2 ** 52]) {
    const log2 = floorLog2(size);
    assert.equal(log2, Math.floor(Math.log2(size)));
    const expected = (log2 - 6) * SL_COUNT + Math.floor(size / 2 ** (log2 - 4)) - SL_COUNT;
    assert.equal(classOf(size), expected, `classOf(${size})`);
  }
  assert.equal(flCountFor(2 ** 52), Math.floor(classOf(2 ** 52) / SL_COUNT) + 1);
});
