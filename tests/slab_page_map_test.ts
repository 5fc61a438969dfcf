import assert from "#assert";
import { SlabPageMap } from "../allocator/slab/slab_page_map.ts";
import { LayerState } from "../allocator/slab/layer_state.ts";
import type { FrameAllocator } from "../allocator/frames/buddy.ts";
import {
  E_AUX,
  E_NEXT,
  E_TAG,
  KIND_FREE_HEAD,
  KIND_SLAB_HEAD,
  KIND_SLAB_TAIL,
  tag,
} from "../allocator/frames/frame_table.ts";

/** One chunk of 4 frames at window offset 4104 (absolute 2^36 + 4096) (its table after them): a 2-frame slab, then free frames. */
function fakeFrames(): FrameAllocator {
  const words = new Int32Array(64 << 10);
  const start = 4104;
  const table = (start + 4 * 4096) >> 2;
  words[table + E_TAG] = tag(KIND_SLAB_HEAD, 1, 2);
  words[table + E_AUX] = 100;
  words[table + 4 + E_TAG] = KIND_SLAB_TAIL;
  words[table + 4 + E_NEXT] = 0; // ref of the head: chunk 0, local 0
  words[table + 8 + E_TAG] = tag(KIND_FREE_HEAD, 1, 0);
  return {
    words,
    directory: { idLimit: 1, startOffset: Int32Array.of(start) },
    chunkFrames: Int32Array.of(4),
    chunkTableWord: Int32Array.of(table),
  } as unknown as FrameAllocator;
}

Deno.test("SlabPageMap.difference() is null exactly when the map copies the frame table", () => {
  const frames = fakeFrames();
  // A window base 8 bytes past a frame boundary: pages follow absolute frames.
  const map = new SlabPageMap(LayerState.unshared(frames.words.byteLength), 0x10_0000_0000 - 8);
  assert.equal(map.phaseBytes, 4088);
  assert.match(map.difference(frames)!, /slab frame 0 of chunk 0/);
  map.set(4104, 2, 100, 2);
  assert.equal(map.pageOf(4104 + 4095), map.pageOf(4104 + 4096) - 1);
  assert.equal(map.difference(frames), null);
  assert.equal(map.descriptorPlusOne[map.pageOf(4104 + 4096)], 101);
  assert.equal(map.info[map.pageOf(4104 + 4096)], (2 << 3) | 1);

  map.info[map.pageOf(4104 + 4096)] = 2 << 3; // the tail frame claims to be its slab's first
  assert.match(map.difference(frames)!, /slab frame 1 of chunk 0/);
  map.set(4104, 2, 100, 2);
  map.mappedPages -= 2;
  map.set(4104 + 2 * 4096, 1, 7, 3); // a free frame mapped
  assert.match(map.difference(frames)!, /3 pages mapped/);
  map.clear(4104 + 2 * 4096, 1);
  assert.equal(map.difference(frames), null);
  map.clear(4104, 2);
  assert.match(map.difference(frames)!, /slab frame 0/);
});
