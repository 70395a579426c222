import type { Attributes } from '../pdata/attributes';

// Live reconfiguration as a declared capability. A factory whose components can change settings
// while running says so with `live`; its components implement LiveReconfigurable. The service,
// the supervisor and the admin API handle every such component through these two interfaces, by
// component id, and know nothing of what the settings mean.

/** How a live-editable component's settings decide one instance (a dry run of new settings). */
export interface InstanceDecision {
  readonly kept: boolean;
  /** The rule that decided, as shown in the inventory; null when the default decided. */
  readonly selector: string | null;
  /** What the decision leaves open, for people (e.g. `spans may be dropped by 2 span conditions`). */
  readonly note?: string;
}

/** Declared on a factory (`Factory.live`) whose components take new settings while running. */
export interface LiveSettings<C> {
  /**
   * The keys of the component's config that can be edited live (filter: keep, drop). An edit
   * names all of them: a key it leaves out is removed. The config is then parsed again by the
   * factory's parseConfig (its other keys as they are), so an edit is validated exactly as the
   * config file is. Saving writes these keys under the component's node of the config file
   * (`<kind>s::<id>::<key>`, a key absent now deleted).
   */
  readonly keys: readonly string[];
  /** The live keys of a parsed config, as plain JSON (undefined: absent). */
  current(config: C): Record<string, unknown>;
  /**
   * On a reload: whether a running component can take the config whose raw body (the mapping
   * under its id, env-expanded) changed from `before` to `after`, through reconfigure(), with
   * everything else in the document unchanged. Otherwise the service restarts.
   */
  appliesInPlace(before: unknown, after: unknown): boolean;
  /**
   * How a config decides an instance from its resource; absent when the component does not decide
   * on instances. `resource`: the resource's ResourceSpans / ResourceMetrics bytes without their
   * scopes (the Resource message and schema_url, exact types), when the inventory kept them.
   * undefined: the config cannot be judged on what is known.
   */
  decide?(config: C, attributes: Attributes, resource?: Uint8Array): InstanceDecision | undefined;
}

/** A running component that takes a new, validated config (parsed by its factory) in place. */
export interface LiveReconfigurable<C = unknown> {
  /** Applies from the next batch on. Must not throw: the config is valid. */
  reconfigure(config: C): void;
}

export function isLiveEditable<F extends object>(factory: F): factory is F & { readonly live: LiveSettings<unknown> } {
  const live = (factory as { live?: Partial<LiveSettings<unknown>> }).live;
  return typeof live?.current === 'function' && typeof live.appliesInPlace === 'function' && Array.isArray(live.keys);
}

export function canReconfigure(component: unknown): component is LiveReconfigurable {
  return typeof (component as Partial<LiveReconfigurable> | undefined)?.reconfigure === 'function';
}

/** A dry run: the validation errors (then no instances), or each known instance as the settings would decide it. */
export interface DryRunResult {
  readonly errors: string[];
  /** `kept: null`: not decided (the component does not decide on instances, or the inventory did not keep all of the instance's attributes). */
  readonly instances: { id: string; kept: boolean | null; selector: string | null; note?: string }[];
}
