// Two small inline-SVG charts for the dashboard: grouped bars and lines over positions.
// Every value is a rate in [0, 1], drawn in percent; each mark carries a <title> tooltip.
"use strict";

const Charts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f3a5f", "#d9822b", "#2b6e3f", "#8e44ad", "#b03a2e", "#5d6d7e"];
  const W = 560, H = 220;  // viewBox units; the SVG scales to its container's width
  const M = { top: 12, right: 12, bottom: 42, left: 44 };

  function el(tag, attributes = {}, text = "") {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  const percent = (v) => (100 * v).toFixed(v > 0 && v < 0.1 ? 1 : 0) + "%";

  // A round top for the y axis: 1, 2 or 5 times a power of ten, at least the largest value.
  function niceMax(max) {
    if (!(max > 0)) return 0.1;
    const step = 10 ** Math.floor(Math.log10(max));
    return [1, 2, 5, 10].map((f) => f * step).find((top) => top >= max - 1e-12);
  }

  const frame = (label) => el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });

  function yAxis(svg, top) {
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4, y = M.top + (H - M.top - M.bottom) * (1 - i / 4);
      svg.append(el("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: i ? "grid" : "axis" }));
      svg.append(el("text", { x: M.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, percent(v)));
    }
  }

  function legend(svg, names) {
    let x = M.left;
    names.forEach((name, i) => {
      svg.append(el("rect", { x, y: H - 14, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
      svg.append(el("text", { x: x + 14, y: H - 5, class: "tick" }, name));
      x += 24 + 7 * name.length;
    });
  }

  const yOf = (v, top) => M.top + (H - M.top - M.bottom) * (1 - v / top);

  // groups: [{label, values: [rate per series]}]; series: names of the bars in each group.
  function bars(container, groups, series, label) {
    container.replaceChildren();
    if (!groups.length) return container.append(empty());
    const svg = frame(label);
    const top = niceMax(Math.max(...groups.flatMap((g) => g.values)));
    yAxis(svg, top);
    const slot = (W - M.left - M.right) / groups.length;
    const bar = Math.min(36, (slot * 0.7) / series.length);
    groups.forEach((group, g) => {
      const x0 = M.left + slot * g + (slot - bar * series.length) / 2;
      group.values.forEach((v, s) => {
        const y = yOf(v, top);
        const rect = el("rect", { x: x0 + bar * s, y, width: bar - 2, height: yOf(0, top) - y,
                                  fill: COLORS[s % COLORS.length], class: "bar", "data-value": v });
        rect.append(el("title", {}, `${group.label}, ${series[s]}: ${percent(v)}`));
        svg.append(rect);
      });
      svg.append(el("text", { x: M.left + slot * (g + 0.5), y: H - M.bottom + 14, "text-anchor": "middle",
                              class: "label" }, group.label));
    });
    legend(svg, series);
    container.append(svg);
  }

  // lines: [{name, points: [{x: position (0-based), y: rate, note}]}]
  function lines(container, lines, label) {
    container.replaceChildren();
    const drawn = lines.filter((l) => l.points.length);
    if (!drawn.length) return container.append(empty());
    const svg = frame(label);
    const top = niceMax(Math.max(...drawn.flatMap((l) => l.points.map((p) => p.y))));
    const n = Math.max(...drawn.flatMap((l) => l.points.map((p) => p.x))) + 1;
    const xOf = (x) => M.left + 10 + ((W - M.left - M.right - 20) * x) / Math.max(1, n - 1);
    yAxis(svg, top);
    for (let x = 0; x < n; x++) {
      svg.append(el("text", { x: xOf(x), y: H - M.bottom + 14, "text-anchor": "middle", class: "tick" }, String(x + 1)));
    }
    drawn.forEach((line, i) => {
      const color = COLORS[i % COLORS.length];
      const path = line.points.map((p) => `${xOf(p.x).toFixed(1)},${yOf(p.y, top).toFixed(1)}`).join(" ");
      svg.append(el("polyline", { points: path, fill: "none", stroke: color, "stroke-width": 2, "data-surface": line.name }));
      for (const p of line.points) {
        const dot = el("circle", { cx: xOf(p.x), cy: yOf(p.y, top), r: 3.5, fill: color, "data-value": p.y });
        dot.append(el("title", {}, `${line.name}, position ${p.x + 1}: ${percent(p.y)}${p.note ? " (" + p.note + ")" : ""}`));
        svg.append(dot);
      }
    });
    legend(svg, drawn.map((l) => l.name));
    container.append(svg);
  }

  function empty() {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "Nothing shown in this time range.";
    return p;
  }

  return { bars, lines, percent };
})();
