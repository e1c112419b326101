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
    .route('POST', '/v1/cni/attachments', (b) => node.attachContainer(obj(b)))
    .route('DELETE', '/v1/cni/attachments', (b) => node.detachContainer(obj(b)))
    .route('POST', '/v1/cni/check', (b) => node.checkContainer(obj(b)))
    .route('POST', '/v1/cni/gc', (b) => node.gcAttachments(obj(b)));
}
