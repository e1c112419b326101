import { readFileSync, writeFileSync } from 'node:fs';
import type { ApiServer } from './api.js';
import type { NodeRuntime } from './node.js';

type Body = Record<string, unknown>;
const obj = (b: unknown): Body => (typeof b === 'object' && b !== null && !Array.isArray(b) ? (b as Body) : {});

/**
 * The daemon's side of the CNI plugin (src/cni): attachments of interfaces to namespaces that a container
 * runtime made. The plugin is a short-lived process per CNI call; the daemon holds the devices.
 */
export function cniRoutes(api: ApiServer, node: NodeRuntime): void {
  api
    .route('GET', '/v1/cni/status', () => ({ ready: true, node: node.cfg.node, subnet: node.subnet.cidr, attachments: node.listAttachments().length }))
    .route('GET', '/v1/cni/attachments', () => node.listAttachments())
    .route('POST', '/v1/cni/attachments', async (b) => {
      const a = await node.attachContainer(obj(b));
      enableForwarding();
      return a;
    })
    .route('DELETE', '/v1/cni/attachments', (b) => node.detachContainer(obj(b)))
    .route('POST', '/v1/cni/check', (b) => node.checkContainer(obj(b)))
    .route('POST', '/v1/cni/gc', (b) => node.gcAttachments(obj(b)));
}

/**
 * Chained plugins such as portmap DNAT host traffic to a container's address, which the host must then
 * forward to podnet0: like the reference bridge plugin, an ADD turns IPv4 forwarding on in the node's
 * namespace (a new namespace starts with it off).
 */
function enableForwarding(): void {
  const p = '/proc/sys/net/ipv4/ip_forward';
  if (readFileSync(p, 'utf8').trim() !== '1') writeFileSync(p, '1');
}
