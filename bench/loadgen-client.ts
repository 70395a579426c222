import type { ChildProcess } from 'node:child_process';
import type { Command, Hello, Reply } from './protocol';

// The orchestrator's end of the load generator + sink child (bench/loadgen.ts): commands over IPC,
// each answered by one reply. Used by run.ts and soak.ts.

export class LoadGen {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly ready: Promise<Hello>;
  /** The child's hello, once it came (its sink's ports and thread). */
  hello: Hello | undefined;

  constructor(readonly child: ChildProcess) {
    let hello: (h: Hello) => void = () => undefined;
    let failed: (e: Error) => void = () => undefined;
    this.ready = new Promise<Hello>((resolve, reject) => {
      hello = resolve;
      failed = reject;
    });
    child.on('message', (message: Reply | Hello) => {
      if ('type' in message) {
        this.hello = message;
        hello(message);
        return;
      }
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.ok) waiter.resolve(message.result);
      else waiter.reject(new Error(message.error));
    });
    child.once('exit', (code, signal) => {
      const err = new Error(`the load generator exited (${code ?? signal})`);
      failed(err);
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T>(command: Command): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, command });
    });
  }
}
