import { AsyncResource } from 'node:async_hooks';

// Node 20 (and up to at least 24) gives every function AsyncResource#bind returns a deprecated
// `asyncResource` accessor (DEP0172), built from two fresh deprecate() wrappers whose prototypes
// are set to fresh closures. node:http2 binds one function per outgoing stream, so each export call
// leaves new hidden classes in V8's old space that only a full mark-compact frees. At 100 exports a
// second that was 7-15 % of spansieve's CPU and about 11 MiB of RSS (docs/performance.md). Nothing
// in spansieve or its dependencies reads the property; this installs the same bind without it, only
// on a Node that still defines it.

type AnyFunction = (...args: unknown[]) => unknown;

/** Replaces AsyncResource#bind when it adds the deprecated accessor. Returns whether it did. */
export function installLeanAsyncResourceBind(): boolean {
  const probe = new AsyncResource('spansieve-probe').bind(() => undefined);
  if (Object.getOwnPropertyDescriptor(probe, 'asyncResource') === undefined) return false;
  const lean = function bind(this: AsyncResource, fn: AnyFunction, thisArg?: unknown): AnyFunction {
    return leanBound(this, fn, thisArg);
  };
  AsyncResource.prototype.bind = lean as AsyncResource['bind'];
  return true;
}

function leanBound(resource: AsyncResource, fn: AnyFunction, thisArg: unknown): AnyFunction {
  if (typeof fn !== 'function') throw new TypeError(`The "fn" argument must be of type function. Received ${typeof fn}`);
  const bound =
    thisArg === undefined
      ? function (this: unknown, ...args: unknown[]): unknown {
          return resource.runInAsyncScope(fn, this, ...args);
        }
      : (...args: unknown[]): unknown => resource.runInAsyncScope(fn, thisArg, ...args);
  // As Node's: the bound function reports the arity of the one it wraps.
  Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, writable: false, value: fn.length });
  return bound;
}
