/**
 * The page of `podnet ui`: plain HTML, CSS and one script, no framework and nothing fetched from
 * elsewhere. The script opens an EventSource on /events and redraws an inline SVG from each map the
 * server sends (nodes, pods, services, flows, already laid out by layout.ts), so the page follows the
 * cluster without a reload. Text is always set with textContent, never parsed as markup.
 *
 * Kept as strings (not files next to the build) so the CLI needs nothing copied into dist/.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>podnet</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1>podnet</h1>
  <span id="summary">waiting for the first reading</span>
  <span id="conn" class="conn wait">connecting</span>
</header>
<div id="error" hidden></div>
<main id="canvas"><svg id="map" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="cluster map"></svg></main>
<section id="details">
  <div>
    <h2>Pods</h2>
    <table id="pods"><thead><tr><th>node</th><th>pod</th><th>ip</th><th>device</th><th>rx frames/s</th><th>tx frames/s</th><th>rx bytes/s</th><th>tx bytes/s</th><th>drops</th><th>services</th></tr></thead><tbody></tbody></table>
  </div>
  <div>
    <h2>Traffic</h2>
    <table id="flows"><thead><tr><th>from</th><th>to</th><th>service</th><th>protocol</th><th>connections</th><th>packets/s</th></tr></thead><tbody></tbody></table>
  </div>
</section>
<script src="/app.js" defer></script>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --fg: #1d2733; --muted: #66717d; --line: #c6ced6; --node: #f3f6f9; --tap: #2f7dd1; --tun: #7a52c7; --svc: #e8f5ec; --svcline: #3b9a5a; --flow: #d9822b; --ext: #fbeee0; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fff; }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0; }
h2 { font-size: 14px; margin: 16px 0 6px; }
#summary { color: var(--muted); }
.conn { margin-left: auto; padding: 1px 8px; border-radius: 10px; font-size: 12px; }
.conn.live { background: #dff3e4; color: #1f6b35; }
.conn.wait { background: #fdf0d5; color: #8a5a00; }
#error { margin: 10px 20px; padding: 8px 12px; background: #fde4e1; color: #8c1c13; border-radius: 4px; }
#canvas { overflow: auto; padding: 0 0 10px; }
svg text { font-size: 12px; fill: var(--fg); }
svg .muted { fill: var(--muted); font-size: 11px; }
svg .title { font-weight: 600; font-size: 14px; }
.node > rect { fill: var(--node); stroke: var(--line); rx: 8px; }
.node.remote > rect, .node.unreachable > rect, .node.unregistered > rect { stroke-dasharray: 6 4; }
.pod circle { fill: var(--tap); stroke: #fff; stroke-width: 2px; }
.pod.tun circle { fill: var(--tun); }
.pod.active circle { stroke: var(--flow); stroke-width: 4px; }
.service > rect { fill: var(--svc); stroke: var(--svcline); rx: 6px; }
.endpoint { stroke: var(--svcline); stroke-dasharray: 4 3; fill: none; opacity: .7; }
.flow { stroke: var(--flow); fill: none; opacity: .85; }
.flow.idle { stroke: #b5bcc3; opacity: .6; }
.nodelink { stroke: #8796a5; fill: none; stroke-dasharray: 2 4; }
.nodelink.busy { stroke: var(--flow); stroke-dasharray: none; }
.external > rect { fill: var(--ext); stroke: var(--flow); rx: 6px; }
#details { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 24px; padding: 0 20px 20px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eef1f4; white-space: nowrap; }
th { color: var(--muted); font-weight: 500; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
`;

/** The page's script. Plain ES2017 in a string: it must contain no backquote and no dollar-brace. */
export const PAGE_JS = `'use strict';
(function () {
  var NS = 'http://www.w3.org/2000/svg';
  var svg = document.getElementById('map');
  var last = null;

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function text(parent, x, y, s, cls, anchor) {
    var t = el('text', { x: x, y: y, 'class': cls || null, 'text-anchor': anchor || null }, parent);
    t.textContent = s;
    return t;
  }
  function title(parent, s) {
    var t = el('title', {}, parent);
    t.textContent = s;
  }
  function rate(v) {
    if (v === undefined || v === null) return '-';
    if (v >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    if (v >= 100) return v.toFixed(0);
    return String(Math.round(v * 10) / 10);
  }
  function bytes(v) {
    if (v === undefined || v === null) return '-';
    if (v >= 1048576) return (v / 1048576).toFixed(1) + ' MB';
    if (v >= 1024) return (v / 1024).toFixed(1) + ' KB';
    return v + ' B';
  }
  function refLabel(map, r) {
    if (r.kind === 'pod') return r.id;
    if (r.kind === 'node') return 'node ' + r.name;
    return r.ip === 'other' ? 'other addresses' : r.ip;
  }
  function refKey(r) { return r.kind === 'pod' ? r.id : r.kind === 'node' ? 'node:' + r.name : 'ext:' + r.ip; }
  function point(layout, r) {
    if (r.kind === 'pod') return layout.pods[r.id];
    if (r.kind === 'node') { var b = layout.nodes[r.name]; return b ? { x: b.x + b.w - 24, y: b.y + 22 } : null; }
    var e = layout.externals[r.ip];
    return e ? { x: e.x, y: e.y + e.h / 2 } : null;
  }
  function curve(a, b, bend) {
    var mx = (a.x + b.x) / 2, my = (a.y + b.y) / 2;
    var dx = b.x - a.x, dy = b.y - a.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
    var cx = mx - dy / len * bend, cy = my + dx / len * bend;
    return 'M' + a.x + ' ' + a.y + ' Q' + cx + ' ' + cy + ' ' + b.x + ' ' + b.y;
  }
  function count(n, what) { return n + ' ' + what + (n === 1 ? '' : 's'); }
  function cell(tr, s, num) {
    var td = document.createElement('td');
    td.textContent = s;
    if (num) td.className = 'num';
    tr.appendChild(td);
  }

  function render(payload) {
    var errBox = document.getElementById('error');
    if (payload.error) { errBox.hidden = false; errBox.textContent = payload.error; } else { errBox.hidden = true; }
    if (!payload.map) return;
    last = payload;
    var map = payload.map, layout = payload.layout;
    document.getElementById('summary').textContent =
      count(map.nodes.length, 'node') + ', ' + count(map.pods.length, 'pod') + ', ' + count(map.services.length, 'service') + ', ' +
      count(map.flows.length, 'tracked connection pair') + '; cluster view from ' + map.source + ', read ' + new Date(map.at).toLocaleTimeString();
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.setAttribute('viewBox', '0 0 ' + layout.width + ' ' + layout.height);
    svg.setAttribute('width', layout.width);
    svg.setAttribute('height', layout.height);
    var defs = el('defs', {}, svg);
    var marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerUnits: 'userSpaceOnUse', markerWidth: 12, markerHeight: 12, orient: 'auto-start-reverse' }, defs);
    el('path', { d: 'M0 0 L10 5 L0 10 z', fill: '#d9822b' }, marker);

    map.nodes.forEach(function (n) {
      var b = layout.nodes[n.name];
      if (!b) return;
      var g = el('g', { 'class': 'node ' + n.counters, 'data-node': n.name }, svg);
      el('rect', { x: b.x, y: b.y, width: b.w, height: b.h }, g);
      text(g, b.x + 12, b.y + 22, n.name, 'title');
      text(g, b.x + 12, b.y + 40, n.subnet ? 'subnet ' + n.subnet + '   underlay ' + n.underlayIp : 'not a registered node', 'muted');
      var line;
      if (n.counters === 'live') {
        line = 'vxlan tx ' + rate(n.vxlanTxPerSec) + '/s  rx ' + rate(n.vxlanRxPerSec) + '/s   routed ' + rate(n.forwardedPerSec) + '/s   conns ' + (n.conntrackEntries === undefined ? '-' : n.conntrackEntries);
      } else if (n.counters === 'unreachable') {
        line = 'counters: daemon did not answer';
      } else if (n.counters === 'remote') {
        line = 'counters: no daemon socket on this machine';
      } else {
        line = '';
      }
      var t = text(g, b.x + 12, b.y + 58, line, 'muted');
      t.setAttribute('data-node-rates', n.name);
      if (n.error) title(g, n.error);
    });

    map.nodeLinks.forEach(function (l) {
      var a = layout.nodes[l.a], b = layout.nodes[l.b];
      if (!a || !b) return;
      var pa = { x: a.x + a.w / 2, y: a.y }, pb = { x: b.x + b.w / 2, y: b.y };
      if (a.y !== b.y) { pa = { x: a.x + a.w, y: a.y + 30 }; pb = { x: b.x + b.w, y: b.y + 30 }; }
      var bend = a.y === b.y ? -(10 + Math.abs(pb.x - pa.x) * 0.08) : 40;
      var known = l.abPerSec !== undefined || l.baPerSec !== undefined;
      var top = Math.max(l.abPerSec || 0, l.baPerSec || 0, l.packetsPerSec);
      var busy = top > 0;
      var p = el('path', {
        d: curve(pa, pb, bend),
        'class': 'nodelink' + (busy ? ' busy' : ''),
        'data-nodelink': l.a + '|' + l.b,
        'data-ab': l.abPerSec === undefined ? '' : l.abPerSec,
        'data-ba': l.baPerSec === undefined ? '' : l.baPerSec,
        'stroke-width': busy ? 1.5 + Math.min(5, Math.log2(1 + top) / 2) : 1
      }, svg);
      var vx = known ? 'vxlan ' + l.a + '>' + l.b + ' ' + rate(l.abPerSec) + '/s, ' + l.b + '>' + l.a + ' ' + rate(l.baPerSec) + '/s' : 'vxlan per peer: not counted (both nodes have other peers)';
      title(p, l.a + ' - ' + l.b + (l.peered ? '' : ' (not VXLAN peers)') + ': ' + vx + '; tracked connections ' + l.connections + ', ' + rate(l.packetsPerSec) + ' packets/s');
      if (busy) {
        // At the curve's apex (half its bend away from the chord).
        var label = text(svg, (pa.x + pb.x) / 2 + (a.y === b.y ? 0 : bend / 2 + 6), a.y === b.y ? pa.y + bend / 2 - 5 : (pa.y + pb.y) / 2, known ? rate(l.abPerSec) + ' / ' + rate(l.baPerSec) + ' dgram/s' : rate(l.packetsPerSec) + ' pkt/s tracked', 'muted', 'middle');
        label.setAttribute('data-nodelink-label', l.a + '|' + l.b);
      }
    });

    map.services.forEach(function (s) {
      var b = layout.services[s.name];
      if (!b) return;
      s.endpoints.forEach(function (id) {
        var p = layout.pods[id];
        if (!p) return;
        el('path', { d: curve({ x: b.x + b.w / 2, y: b.y + b.h }, p, 0), 'class': 'endpoint', 'data-endpoint': s.name + '>' + id }, svg);
      });
      var g = el('g', { 'class': 'service', 'data-service': s.name }, svg);
      el('rect', { x: b.x, y: b.y, width: b.w, height: b.h }, g);
      text(g, b.x + 10, b.y + 19, s.name + '  (' + s.type + ')', 'title');
      text(g, b.x + 10, b.y + 35, s.clusterIp + '  ' + s.ports, 'muted');
      text(g, b.x + 10, b.y + 50, count(s.endpoints.length + s.otherEndpoints.length, 'endpoint'), 'muted');
      title(g, 'addresses ' + s.addresses.join(', ') + '; endpoints ' + (s.endpoints.concat(s.otherEndpoints).join(', ') || 'none'));
    });

    map.externals.forEach(function (ip) {
      var b = layout.externals[ip];
      var g = el('g', { 'class': 'external', 'data-external': ip }, svg);
      el('rect', { x: b.x, y: b.y, width: b.w, height: b.h }, g);
      text(g, b.x + 10, b.y + 24, ip === 'other' ? 'other addresses' : ip);
    });

    var pairs = {};
    map.flows.forEach(function (f) {
      var a = point(layout, f.from), b = point(layout, f.to);
      if (!a || !b) return;
      if (f.to.kind === 'pod') {
        // End at the circle's edge, so the arrow shows (the circle is drawn over the line).
        var ddx = b.x - a.x, ddy = b.y - a.y, dl = Math.sqrt(ddx * ddx + ddy * ddy) || 1;
        b = { x: b.x - ddx / dl * 18, y: b.y - ddy / dl * 18 };
      }
      var pk = [refKey(f.from), refKey(f.to)].sort().join('|');
      var n = pairs[pk] = (pairs[pk] || 0) + 1;
      var busy = f.packetsPerSec > 0;
      var p = el('path', {
        d: curve(a, b, -(16 + 0.15 * Math.sqrt((b.x - a.x) * (b.x - a.x) + (b.y - a.y) * (b.y - a.y))) * n),
        'class': 'flow' + (busy ? '' : ' idle'),
        'data-flow': refKey(f.from) + '>' + refKey(f.to),
        'data-rate': f.packetsPerSec === undefined ? '' : f.packetsPerSec,
        'stroke-width': busy ? 1.5 + Math.min(7, Math.log2(1 + f.packetsPerSec)) : 1,
        'marker-end': 'url(#arrow)'
      }, svg);
      title(p, refLabel(map, f.from) + ' -> ' + refLabel(map, f.to) + (f.services.length ? ' via ' + f.services.join(', ') : '') + ': ' + rate(f.packetsPerSec) + ' packets/s, ' + f.connections + ' ' + f.protocols.join('/') + ' connections');
    });

    map.pods.forEach(function (p) {
      var c = layout.pods[p.id];
      if (!c) return;
      var active = p.rates && (p.rates.rxFramesPerSec > 0 || p.rates.txFramesPerSec > 0);
      var g = el('g', { 'class': 'pod ' + (p.device || 'tap') + (active ? ' active' : ''), 'data-pod': p.id }, svg);
      el('circle', { cx: c.x, cy: c.y, r: 15 }, g);
      text(g, c.x, c.y + 31, p.name, null, 'middle');
      text(g, c.x, c.y + 46, p.ip, 'muted', 'middle');
      var r = p.rates;
      var t = text(g, c.x, c.y + 61, r ? 'rx ' + rate(r.rxFramesPerSec) + '/s  tx ' + rate(r.txFramesPerSec) + '/s' : 'rx - tx -', 'muted', 'middle');
      t.setAttribute('data-pod-rates', p.id);
      title(g, p.id + ' ' + p.ip + (p.device ? ' (' + p.device + ')' : '') +
        (Object.keys(p.labels).length ? '\\nlabels ' + Object.keys(p.labels).map(function (k) { return k + '=' + p.labels[k]; }).join(',') : '') +
        (p.services.length ? '\\nendpoint of ' + p.services.join(', ') : '') +
        (p.drops ? '\\ndrops ' + p.drops : ''));
    });

    var tb = document.querySelector('#pods tbody');
    while (tb.firstChild) tb.removeChild(tb.firstChild);
    map.pods.forEach(function (p) {
      var tr = document.createElement('tr');
      tr.setAttribute('data-pod-row', p.id);
      var r = p.rates;
      cell(tr, p.node); cell(tr, p.name); cell(tr, p.ip); cell(tr, p.device || '');
      cell(tr, r ? rate(r.rxFramesPerSec) : '-', true); cell(tr, r ? rate(r.txFramesPerSec) : '-', true);
      cell(tr, r ? bytes(r.rxBytesPerSec) : '-', true); cell(tr, r ? bytes(r.txBytesPerSec) : '-', true);
      cell(tr, p.drops === undefined ? '-' : String(p.drops), true); cell(tr, p.services.join(', '));
      tb.appendChild(tr);
    });
    var fb = document.querySelector('#flows tbody');
    while (fb.firstChild) fb.removeChild(fb.firstChild);
    map.flows.forEach(function (f) {
      var tr = document.createElement('tr');
      cell(tr, refLabel(map, f.from)); cell(tr, refLabel(map, f.to)); cell(tr, f.services.join(', ')); cell(tr, f.protocols.join(','));
      cell(tr, String(f.connections), true); cell(tr, rate(f.packetsPerSec), true);
      fb.appendChild(tr);
    });
    window.podnetMap = payload;
    window.podnetUpdates = (window.podnetUpdates || 0) + 1;
  }

  var conn = document.getElementById('conn');
  function state(live, s) { conn.className = 'conn ' + (live ? 'live' : 'wait'); conn.textContent = s; }
  if (window.EventSource) {
    var es = new EventSource('/events');
    es.onopen = function () { state(true, 'live'); };
    es.onerror = function () { state(false, 'reconnecting'); };
    es.addEventListener('map', function (e) { state(true, 'live'); render(JSON.parse(e.data)); });
  } else {
    (function poll() {
      fetch('/api/map').then(function (r) { return r.json(); }).then(function (p) { state(true, 'polling'); render(p); }, function () { state(false, 'reconnecting'); })
        .then(function () { setTimeout(poll, 2000); });
    })();
  }
})();
`;
