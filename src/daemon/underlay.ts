import { ip } from '../netns/run.js';
import { ErrorCode, PodnetError } from '../util/errors.js';
import type { Config } from './config.js';

/** The node's "physical" network: the interface VXLAN and the uplink use, its address and MTU. */
export interface Underlay {
  interface: string | undefined;
  ip: string | undefined;
  mtu: number;
}

/** The underlay: configured, or the first up, non-loopback interface with an IPv4 address. */
export async function detectUnderlay(cfg: Config): Promise<Underlay> {
  const { stdout } = await ip(['-j', '-4', 'addr', 'show']);
  const links = JSON.parse(stdout) as Array<{ ifname: string; mtu: number; flags: string[]; addr_info: Array<{ local: string }> }>;
  const candidates = links.filter(
    (l) => l.ifname !== 'lo' && !l.ifname.startsWith('pn') && l.ifname !== 'podnet0' && l.flags.includes('UP') && l.addr_info.length > 0,
  );
  let link = cfg.underlay.interface ? links.find((l) => l.ifname === cfg.underlay.interface) : candidates[0];
  if (cfg.underlay.interface && !link) {
    throw new PodnetError(ErrorCode.InvalidArgument, `invalid config: underlay.interface: no interface ${cfg.underlay.interface} with an IPv4 address`);
  }
  if (cfg.underlay.ip && !cfg.underlay.interface) link = links.find((l) => l.addr_info.some((a) => a.local === cfg.underlay.ip)) ?? link;
  return { interface: link?.ifname, ip: cfg.underlay.ip ?? link?.addr_info[0]?.local, mtu: cfg.underlay.mtu };
}

