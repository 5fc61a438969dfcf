/**
 * A Worker driven call by call: its module source answers every
 * `{ id, call, args }` message with `{ id, result }` or `{ id, error: { code,
 * message } }`. The adversarial tests run heaps in such Workers.
 *
 * @module
 */

import assert from "node:assert/strict";

/** A Worker's answer to one call. */
export interface Reply {
  readonly result?: unknown;
  readonly error?: { code: string; message: string };
}

/** A Worker running `source`, driven call by call. */
export class RpcWorker {
  readonly worker: Worker;
  #nextId = 1;
  readonly #waiting = new Map<number, (reply: Reply) => void>();

  /** Starts a Worker from the module source `source`. */
  constructor(source: string) {
    this.worker = new Worker(`data:text/javascript,${encodeURIComponent(source)}`, {
      type: "module",
    });
    this.worker.onmessage = ({ data }: MessageEvent<Reply & { id: number }>) => {
      this.#waiting.get(data.id)?.(data);
      this.#waiting.delete(data.id);
    };
  }

  /** Sends one call; resolves with the Worker's reply. */
  call(call: string, ...args: unknown[]): Promise<Reply> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.worker.postMessage({ id, call, args });
    });
  }

  /** Sends one call, asserts it succeeded, and resolves with its result. */
  async ok(call: string, ...args: unknown[]): Promise<unknown> {
    const reply = await this.call(call, ...args);
    assert.equal(reply.error, undefined, `${call}(${args}): ${reply.error?.message}`);
    return reply.result;
  }

  /** Sends one call and asserts it was refused with one of `code`. */
  async refused(code: string | string[], call: string, ...args: unknown[]): Promise<void> {
    const reply = await this.call(call, ...args);
    const codes = typeof code === "string" ? [code] : code;
    assert.ok(
      reply.error !== undefined && codes.includes(reply.error.code),
      `${call}(${args}): expected ${codes}, got ${JSON.stringify(reply)}`,
    );
  }
}
