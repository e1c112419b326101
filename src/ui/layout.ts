/**
 * Where things go on the map of `podnet ui` (SVG user units): services in a band at the top, nodes as
 * boxes in a grid below with their pods in two columns inside, outside addresses in a column on the
 * right. Pure and deterministic (sorted input, no randomness), so a map laid out twice is the same
 * picture and a pod added moves nothing before it.
 */
import type { ClusterMap } from './model.js';

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface MapLayout {
  width: number;
  height: number;
  nodes: Record<string, Box>;
  /** Centre of each pod's circle, by pod id. */
  pods: Record<string, { x: number; y: number }>;
  services: Record<string, Box>;
  externals: Record<string, Box>;
}

export const L = {
  margin: 20,
  gap: 24,
  serviceW: 190,
  serviceH: 58,
  nodeHeader: 74,
  podCols: 2,
  podCellW: 170,
  podCellH: 92,
  podRadius: 15,
  externalW: 150,
  externalH: 40,
  minWidth: 640,
} as const;

const nodeW = L.podCols * L.podCellW + 20;

export function layoutMap(map: ClusterMap): MapLayout {
  const nodeCount = map.nodes.length;
  const cols = Math.max(1, Math.min(nodeCount, Math.max(3, Math.ceil(Math.sqrt(nodeCount)))));
  const hasExternals = map.externals.length > 0;
  const gridW = cols * nodeW + (cols - 1) * L.gap;
  const width = Math.max(L.minWidth, L.margin * 2 + gridW + (hasExternals ? L.gap + L.externalW : 0));

  // Services: a band that wraps at the map's width.
  const services: Record<string, Box> = {};
  const perRow = Math.max(1, Math.floor((width - 2 * L.margin + L.gap) / (L.serviceW + L.gap)));
  map.services.forEach((s, i) => {
    services[s.name] = {
      x: L.margin + (i % perRow) * (L.serviceW + L.gap),
      y: L.margin + Math.floor(i / perRow) * (L.serviceH + L.gap),
      w: L.serviceW,
      h: L.serviceH,
    };
  });
  const serviceRows = Math.ceil(map.services.length / perRow);
  // Room between the band and the nodes for the lines to the endpoints.
  let y = L.margin + (serviceRows > 0 ? serviceRows * (L.serviceH + L.gap) + 30 : 0);
  const gridTop = y;

  const nodes: Record<string, Box> = {};
  const pods: Record<string, { x: number; y: number }> = {};
  const podsOf = new Map<string, string[]>();
  for (const p of map.pods) {
    const l = podsOf.get(p.node) ?? [];
    l.push(p.id);
    podsOf.set(p.node, l);
  }
  for (let row = 0; row * cols < nodeCount; row++) {
    const inRow = map.nodes.slice(row * cols, row * cols + cols);
    const h = Math.max(...inRow.map((n) => L.nodeHeader + Math.max(1, Math.ceil((podsOf.get(n.name)?.length ?? 0) / L.podCols)) * L.podCellH + 10));
    inRow.forEach((n, i) => {
      const box = { x: L.margin + i * (nodeW + L.gap), y, w: nodeW, h };
      nodes[n.name] = box;
      (podsOf.get(n.name) ?? []).forEach((id, j) => {
        pods[id] = {
          x: box.x + 10 + (j % L.podCols) * L.podCellW + L.podCellW / 2,
          y: box.y + L.nodeHeader + Math.floor(j / L.podCols) * L.podCellH + L.podRadius + 8,
        };
      });
    });
    y += h + L.gap;
  }

  const externals: Record<string, Box> = {};
  const ex = L.margin + gridW + L.gap;
  map.externals.forEach((ip, i) => {
    externals[ip] = { x: ex, y: gridTop + i * (L.externalH + 12), w: L.externalW, h: L.externalH };
  });
  const externalsBottom = gridTop + map.externals.length * (L.externalH + 12);

  const height = Math.max(y, externalsBottom) + L.margin;
  return { width, height, nodes, pods, services, externals };
}
