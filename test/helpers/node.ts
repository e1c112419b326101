import { Dataplane } from '../../src/dataplane/dataplane.js';
import { Router } from '../../src/dataplane/router.js';
import { parseIpv4, parseMac } from '../../src/packet/index.js';

/** The gateway MAC of `routedDataplane()`'s router. */
export const GATEWAY_MAC = '0a:59:0a:f4:01:01';

/**
 * A data plane whose switch has node 1's router on it: subnet 10.244.1.0/24 of the pod CIDR
 * 10.244.0.0/16, gateway 10.244.1.1 (`GATEWAY_MAC`), host address 10.244.1.0. What the unit tests of the
 * switch, router, offloads and VXLAN build their pods around.
 */
export function routedDataplane(): { dp: Dataplane; router: Router } {
  const dp = new Dataplane();
  const gw = parseMac(GATEWAY_MAC);
  const router = new Router(dp, {
    gatewayIp: parseIpv4('10.244.1.1'),
    gatewayMacHi: gw.hi,
    gatewayMacLo: gw.lo,
    hostIp: parseIpv4('10.244.1.0'),
    subnetNetwork: parseIpv4('10.244.1.0'),
    subnetMask: 0xffffff00,
    podCidrNetwork: parseIpv4('10.244.0.0'),
    podCidrMask: 0xffff0000,
  });
  dp.switch.attach(router.port);
  return { dp, router };
}
