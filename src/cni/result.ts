import { atLeast110, type CniInterface, type CniResult, type CniVersion } from './spec.js';

/** What the daemon reports for an attachment (POST /v1/cni/attachments, /v1/cni/check). */
export interface AttachmentView {
  name: string;
  ip: string;
  mac: string;
  prefix: number;
  gateway: string;
  mtu: number;
  device: 'tap' | 'tun';
  attachment: { containerId: string; ifname: string; netns: string; network: string };
}

/**
 * The ADD result: the previous plugins' result (if any) with podnet's interface, address and default
 * route added after theirs. Interface `mtu` exists from 1.1.0 on; a TUN has no MAC.
 */
export function buildAddResult(version: CniVersion, a: AttachmentView, opts: { prevResult?: CniResult | undefined; dns?: CniResult['dns'] } = {}): CniResult {
  const prev = opts.prevResult;
  const interfaces: CniInterface[] = [...(prev?.interfaces ?? [])];
  const iface: CniInterface = { name: a.attachment.ifname };
  if (a.device === 'tap') iface.mac = a.mac;
  if (atLeast110(version)) iface.mtu = a.mtu;
  iface.sandbox = a.attachment.netns;
  const index = interfaces.push(iface) - 1;
  const result: CniResult = {
    cniVersion: version,
    interfaces,
    ips: [...(prev?.ips ?? []), { address: `${a.ip}/${a.prefix}`, gateway: a.gateway, interface: index }],
    routes: [...(prev?.routes ?? []), { dst: '0.0.0.0/0', gw: a.gateway }],
  };
  const dns = opts.dns ?? prev?.dns;
  if (dns && Object.keys(dns).length > 0) result.dns = dns;
  return result;
}

/**
 * CHECK against the ADD result the runtime kept: it must list this interface in this sandbox and the
 * address the daemon holds for it. Returns what is wrong, or undefined.
 */
export function checkPrevResult(prev: CniResult, a: AttachmentView): string | undefined {
  const ifaces = prev.interfaces ?? [];
  const i = ifaces.findIndex((x) => x.name === a.attachment.ifname && x.sandbox === a.attachment.netns);
  if (i < 0) return `prevResult has no interface ${a.attachment.ifname} in sandbox ${a.attachment.netns}`;
  if (a.device === 'tap' && ifaces[i]!.mac !== undefined && ifaces[i]!.mac !== a.mac) return `prevResult says ${a.attachment.ifname} has MAC ${ifaces[i]!.mac}, podnet gave it ${a.mac}`;
  const want = `${a.ip}/${a.prefix}`;
  const ip = (prev.ips ?? []).find((x) => x.interface === i);
  if (!ip) return `prevResult has no address for interface ${a.attachment.ifname}`;
  if (ip.address !== want) return `prevResult says ${a.attachment.ifname} has ${ip.address}, podnet holds ${want} for it`;
  return undefined;
}
