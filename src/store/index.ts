/**
 * The cluster store: pick a backend from config and get a ClusterStore; build a ClusterRegistry on it
 * for typed node/pod records.
 */
import type { Logger } from 'pino';
import { EmbeddedStore, type EmbeddedStoreOptions } from './embedded.js';
import type { EtcdStoreOptions } from './etcd.js';
import { StoreError, StoreErrorCode } from './errors.js';
import type { ClusterStore } from './types.js';

export type StoreConfig =
  | ({ kind: 'embedded'; path: string } & Omit<EmbeddedStoreOptions, 'path' | 'log'>)
  | ({ kind: 'etcd'; endpoints: string[]; prefix?: string } & Omit<EtcdStoreOptions, 'endpoints' | 'prefix' | 'log'>);

/** Opens the configured store. The embedded store is created on first use. */
export async function openStore(config: StoreConfig, log?: Logger): Promise<ClusterStore> {
  switch (config.kind) {
    case 'embedded': {
      const { kind: _kind, ...opts } = config;
      return EmbeddedStore.open({ ...opts, ...(log ? { log } : {}) });
    }
    case 'etcd': {
      const { kind: _kind, ...opts } = config;
      // Loaded only when used: the etcd client (gRPC) takes a good part of a daemon's start-up time,
      // which is a restart's downtime.
      const { EtcdStore } = await import('./etcd.js');
      return new EtcdStore({ ...opts, ...(log ? { log } : {}) });
    }
    default:
      throw new StoreError(StoreErrorCode.InvalidArgument, `unknown store kind ${JSON.stringify((config as { kind: unknown }).kind)}`);
  }
}

export type { ClusterStore, DeleteOptions, KeyValue, Lease, PutOptions, Snapshot, Watch, WatchEvent, WatchOptions } from './types.js';
export { StoreError, StoreErrorCode, isStoreError } from './errors.js';
export { EmbeddedStore, type EmbeddedStoreOptions } from './embedded.js';
export type { EtcdStoreOptions } from './etcd.js';
export {
  ClusterRegistry,
  Collection,
  nodeRecordSchema,
  podRecordSchema,
  type CollectionSpec,
  type NodeEvent,
  type NodeIdentity,
  type NodeRecord,
  type NodeRegistration,
  type PodEvent,
  type PodRecord,
  type RecordEvent,
  type RecordEventType,
  type RegisterOptions,
  type RegistryOptions,
} from './registry.js';
