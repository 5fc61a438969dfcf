/**
 * The policy registry: a policy's name maps to how big its control block is
 * and how to build it. Adding a policy means a class implementing
 * FreeListPolicy, its name in POLICY_NAMES (policy.ts) and an entry here.
 *
 * @module
 */

import type { BlockWords } from "../block.ts";
import type { ControlBlock } from "../control_block.ts";
import { controlBytes } from "../layout.ts";
import { FirstFitPolicy } from "./first_fit.ts";
import type { FreeListPolicy, PolicyName } from "./policy.ts";
import { TlsfPolicy } from "./tlsf.ts";

/** How the allocator sizes and builds one policy. */
export interface PolicyEntry {
  /** Bytes of control block the policy needs for a heap whose largest block area is given. */
  controlBytes(largestAreaBytes: number): number;
  /**
   * Builds the policy over the heap's block words and control block;
   * `inHeap` says whether an address lies in the heap's block areas.
   */
  create(
    blocks: BlockWords,
    control: ControlBlock,
    largestAreaBytes: number,
    inHeap: (address: number) => boolean,
  ): FreeListPolicy;
}

/** Every policy by name. */
export const POLICIES: Readonly<Record<PolicyName, PolicyEntry>> = {
  "tlsf": {
    controlBytes: (largestAreaBytes) => controlBytes(TlsfPolicy.flCountFor(largestAreaBytes)),
    create: (blocks, control, largestAreaBytes, inHeap) =>
      new TlsfPolicy(blocks, control, largestAreaBytes, inHeap),
  },
  "first-fit": {
    controlBytes: () => controlBytes(0),
    create: (blocks, control, _largestAreaBytes, inHeap) =>
      new FirstFitPolicy(blocks, control, inHeap),
  },
};
