/**
 * The BPF filter (pcap-filter syntax) the uplink captures with, and the iptables rule specifications
 * that keep the host kernel away from the same traffic. Pure functions of the configuration, so the
 * two always describe the same set of packets.
 */

export interface UplinkMatch {
  /** The interface's MAC, `aa:bb:cc:dd:ee:ff`. */
  mac: string;
  nodeIp: string;
  nodePortRange: readonly [number, number];
  masqueradePortRange: readonly [number, number];
  /** Announced (LoadBalancer / external) IPs, already validated. */
  announced: readonly string[];
}

/**
 * The capture filter. `and` and `or` have equal precedence in pcap-filter, so every group is
 * parenthesised.
 * - Frames we sent ourselves (source MAC = ours) are excluded; they show up because libpcap also sees
 *   outgoing packets.
 * - IPv4 must be addressed to our MAC: the capture is promiscuous (the binding always asks for it), and
 *   a frame for another station is not ours to take even if it carries one of our IPs (e.g. an IP that
 *   another node announced before us).
 * - To the node IP: TCP/UDP with a destination port in the NodePort or masquerade range (first
 *   fragments only: ports are not in later fragments), and all ICMP (echo replies for masqueraded
 *   pings, errors quoting masqueraded flows; the connection tracker decides).
 * - Any IPv4 to an announced IP, and ARP requests (operation 1) for one.
 */
export function captureFilter(m: UplinkMatch): string {
  const [np0, np1] = m.nodePortRange;
  const [mq0, mq1] = m.masqueradePortRange;
  const terms = [
    `(ip and ether dst ${m.mac} and dst host ${m.nodeIp} and ` +
      `(((tcp or udp) and (dst portrange ${np0}-${np1} or dst portrange ${mq0}-${mq1})) or icmp))`,
  ];
  if (m.announced.length > 0) {
    terms.push(`(ip and ether dst ${m.mac} and (${m.announced.map((ip) => `dst host ${ip}`).join(' or ')}))`);
    terms.push(`(arp and arp[6:2] = 1 and (${m.announced.map((ip) => `arp dst host ${ip}`).join(' or ')}))`);
  }
  return `not ether src ${m.mac} and (${terms.join(' or ')})`;
}

/** iptables rule specifications (everything after `-A CHAIN`). */
export interface RuleSpecs {
  /** For the PREROUTING chain (jumped to for packets in on the uplink): DROP. */
  in: string[][];
  /** For the OUTPUT chain (jumped to for packets out on the uplink): CT --notrack. */
  out: string[][];
}

const PROTOS = ['tcp', 'udp'] as const;

/** Rules for the node IP's two port ranges. */
export function nodeRuleSpecs(nodeIp: string, nodePortRange: readonly [number, number], masqueradePortRange: readonly [number, number]): RuleSpecs {
  const spec: RuleSpecs = { in: [], out: [] };
  for (const [lo, hi] of [nodePortRange, masqueradePortRange]) {
    for (const p of PROTOS) {
      spec.in.push(['-d', `${nodeIp}/32`, '-p', p, '--dport', `${lo}:${hi}`, '-j', 'DROP']);
      spec.out.push(['-s', `${nodeIp}/32`, '-p', p, '--sport', `${lo}:${hi}`, '-j', 'CT', '--notrack']);
    }
  }
  return spec;
}

/** Rules for one announced IP: everything to it is dropped, everything from it is untracked. */
export function announcedRuleSpecs(ip: string): { in: string[]; out: string[] } {
  return {
    in: ['-d', `${ip}/32`, '-j', 'DROP'],
    out: ['-s', `${ip}/32`, '-j', 'CT', '--notrack'],
  };
}
