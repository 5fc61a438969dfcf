import { defineConformanceSuite } from "./support/conformance.ts";

defineConformanceSuite("tlsf", { policy: "tlsf", native: false });
defineConformanceSuite("first-fit", { policy: "first-fit", native: false });

// Addresses above 2^32: the general (wide) word access, with high words set.
const ABOVE_4_GIB = 2 ** 32 + 0x10_0000;
defineConformanceSuite("tlsf, above 4 GiB", { policy: "tlsf", native: false }, ABOVE_4_GIB);
defineConformanceSuite(
  "first-fit, above 4 GiB",
  { policy: "first-fit", native: false },
  ABOVE_4_GIB,
);

// Heaps of at least 2 MiB: the page-frame and slab layers serve them beside the blocks.
defineConformanceSuite("tlsf, layers", { policy: "tlsf", native: false }, 0, 2 << 20);
defineConformanceSuite("first-fit, layers", { policy: "first-fit", native: false }, 0, 2 << 20);
