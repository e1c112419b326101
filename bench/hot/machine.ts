/** What the numbers were measured on. */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs. */
  cores: number;
  /** Physical cores, when /proc/cpuinfo tells. */
  physicalCores?: number;
  cpuMHz?: number;
  node: string;
  v8: string;
  platform: string;
  arch: string;
  kernel: string;
  memoryBytes: number;
  /** 1, 5 and 15 minute load averages when the run started: other work on the machine skews results. */
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  let physicalCores: number | undefined;
  let cpuMHz: number | undefined;
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const model = /^model name\s*:\s*(.+)$/m.exec(text);
    if (model) cpuModel = model[1]!.trim();
    const mhz = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(text);
    if (mhz) cpuMHz = Number(mhz[1]);
    // Distinct (physical id, core id) pairs.
    const cores = new Set<string>();
    for (const block of text.split(/\n\s*\n/)) {
      const phys = /^physical id\s*:\s*(\d+)$/m.exec(block);
      const core = /^core id\s*:\s*(\d+)$/m.exec(block);
      if (phys && core) cores.add(`${phys[1]}:${core[1]}`);
    }
    if (cores.size > 0) physicalCores = cores.size;
  } catch {
    // Not Linux: os.cpus() is all there is.
  }
  return {
    cpuModel,
    cores: os.availableParallelism?.() ?? os.cpus().length,
    physicalCores,
    cpuMHz,
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    kernel: os.release(),
    memoryBytes: os.totalmem(),
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
