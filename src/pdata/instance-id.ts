// The resource attribute that names a process (OBI sets it), read by the filter's selectors and
// the service's inventory alike.

export const INSTANCE_ID = 'service.instance.id';

/** The PID of a host-form instance id (`host:pid`), or undefined for Kubernetes/Docker forms. */
export function pidOfInstanceId(instanceId: string): string | undefined {
  const colon = instanceId.lastIndexOf(':');
  if (colon < 0) return undefined;
  const pid = instanceId.slice(colon + 1);
  return /^\d+$/.test(pid) ? pid : undefined;
}
