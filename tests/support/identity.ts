/**
 * Whether identity-mapped memory can be made here: Linux, and an unscoped
 * `--allow-ffi` (mapIdentity calls mmap through Deno FFI). The test tasks
 * grant it, so in CI these tests run; without the permission they are
 * ignored, never counted as passed.
 *
 * @module
 */

/** True when this process may call mmap through FFI. */
export const CAN_MAP_IDENTITY: boolean = Deno.build.os === "linux" &&
  Deno.permissions.querySync({ name: "ffi" }).state === "granted";
