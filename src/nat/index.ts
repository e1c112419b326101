/**
 * Connection tracking and NAT for the data path (Linux netfilter's model: conntrack.ts, nat.ts).
 *
 * How the router uses it — one `Conntrack` and one `Nat` per node, `now` in seconds from the batch:
 *
 * ```ts
 * const ct = new Conntrack({ max: 262144 });
 * const nat = new Nat(ct, { drops: router.drops });
 * // per packet, after the IPv4 header checks and before routing on the (new) destination:
 * let v = nat.translate(buf, ipOff, ipLen, now);
 * if (v === Verdict.New) {
 *   // nat.proto / nat.src / nat.dst / nat.sport / nat.dport hold the packet's tuple
 *   const svc = services.lookup(nat.proto, nat.dst, nat.dport);
 *   if (svc) {
 *     const ep = svc.pick(nat.src);                           // random or ClientIP affinity
 *     if (ep.ip === nat.src) v = nat.createDnatSnat(buf, ipOff, ipLen, now, ep.ip, ep.port, gatewayIp, lo, hi); // hairpin
 *     else v = nat.createDnat(buf, ipOff, ipLen, now, ep.ip, ep.port);                                          // ClusterIP, NodePort Local
 *   } else if (leavesTheCluster(nat.dst)) v = nat.createSnat(buf, ipOff, ipLen, now, nodeIp, 61001, 65535);    // masquerade
 *   else v = nat.createTracked(buf, ipOff, ipLen, now);
 * }
 * if (v === Verdict.Drop) return;          // counted in router.drops
 * // Ok / NotTracked: route on the packet's (possibly rewritten) destination
 * ...
 * ct.gc(now, 256);                         // once per batch
 * ```
 *
 * NodePort/LoadBalancer with policy Cluster: `createDnatSnat(..., ep.ip, ep.port, nodeIp, lo, hi)`;
 * policy Local: `createDnat` to a local endpoint (the client address is kept).
 * An endpoint removed: `ct.deleteWhere((id, ct) => ct.proto(id) === 17 && ct.src(id * 2 + 1) === epIp)`.
 *
 * Track every forwarded flow (`createTracked` when no NAT applies), as Linux does: NAT allocation
 * can only avoid tuples it knows about, and a reply of an untracked flow could otherwise match a
 * NATed connection's REPLY tuple.
 *
 * `now` and allocation: everything here is allocation-free, and so is passing `now` as long as it
 * is a small integer: V8 boxes a fractional double (a new HeapNumber) each time it passes one read
 * from an object field or computed in the caller to a function it did not inline. The data plane's
 * `Dataplane.now` is whole seconds from a coarse clock (`util/clock.ts`) for that reason.
 */
export * from './conntrack.js';
export * from './nat.js';
