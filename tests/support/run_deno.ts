/**
 * Runs `deno` (the binary running the tests) as a subprocess and collects
 * its output, as the command-line and consumer tests need.
 *
 * @module
 */

/** What a finished subprocess left. */
export interface DenoRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `deno ARGS...` with `NO_COLOR=1` and the given environment additions.
 *
 * @param args The arguments after `deno`.
 * @param options Extra environment variables and the working folder.
 * @returns The exit code and the decoded output.
 */
export async function runDeno(
  args: readonly string[],
  options: { readonly env?: Record<string, string>; readonly cwd?: string | URL } = {},
): Promise<DenoRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...args],
    cwd: options.cwd,
    env: { ...options.env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}
