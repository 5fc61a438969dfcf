import { defineConformanceSuite } from "./support/conformance.ts";

defineConformanceSuite("tlsf", { policy: "tlsf", native: false });
defineConformanceSuite("first-fit", { policy: "first-fit", native: false });
