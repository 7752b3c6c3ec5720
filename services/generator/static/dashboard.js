// The pipeline dashboard: /v1/dashboard every few seconds, one uPlot chart per panel.
"use strict";

const REFRESH_MS = 5000;
const PALETTE = ["#e0f070", "#70d0f0", "#f0a050", "#c080f0", "#f07070", "#70f0a0",
                 "#f0f0f0", "#a0a0ff", "#d0b070", "#60c0c0"];
const charts = new Map();   // panel id -> {plot, signature, box}
const main = document.getElementById("panels");

function formatValue(unit, v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const abs = Math.abs(v);
  if (unit === "bytes") {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return `${x.toFixed(x >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
  }
  let text;
  if (abs >= 1e6) text = `${(v / 1e6).toFixed(1)}M`;
  else if (abs >= 1e4) text = `${(v / 1e3).toFixed(0)}k`;
  else if (abs >= 100 || abs === 0) text = v.toFixed(0);
  else if (abs >= 1) text = v.toFixed(2).replace(/\.?0+$/, "");
  else text = v.toPrecision(2);
  if (unit === "x") return `${text}×`;
  if (unit === "/s") return `${text}/s`;
  if (unit === "s") return `${text} s`;
  return text;
}

function sectionFor(name) {
  let section = document.querySelector(`section[data-section="${name}"]`);
  if (!section) {
    section = document.createElement("section");
    section.dataset.section = name;
    section.className = "dash-section";
    section.innerHTML = `<h2></h2><div class="dash-grid"></div>`;
    section.querySelector("h2").textContent = name;
    main.appendChild(section);
  }
  return section.querySelector(".dash-grid");
}

function panelBox(panel) {
  let box = document.getElementById(`panel-${panel.id}`);
  if (!box) {
    box = document.createElement("figure");
    box.id = `panel-${panel.id}`;
    box.className = "dash-panel";
    box.innerHTML = `<figcaption></figcaption><div class="chart"></div>` +
                    `<p class="empty">no data yet</p>`;
    box.querySelector("figcaption").textContent = panel.title;
    sectionFor(panel.section).appendChild(box);
  }
  return box;
}

function chartWidth(box) {
  return Math.max(260, box.clientWidth - 16);
}

function draw(panel, times) {
  const box = panelBox(panel);
  const points = panel.series.reduce(
    (n, s) => n + s.values.filter((v) => v !== null).length, 0);
  box.dataset.points = String(points);
  box.querySelector(".empty").hidden = points > 0;
  const signature = panel.series.map((s) => `${s.name}|${s.right}`).join(";");
  const data = [times, ...panel.series.map((s) => s.values)];
  let entry = charts.get(panel.id);
  if (entry && entry.signature !== signature) {
    entry.plot.destroy();
    charts.delete(panel.id);
    entry = null;
  }
  if (entry) {
    entry.plot.setData(data);
    return;
  }
  const hasRight = panel.series.some((s) => s.right);
  const rightUnit = panel.right_unit || panel.unit;
  const axisStyle = { stroke: "#9bbc0f", grid: { stroke: "rgba(155,188,15,0.12)" },
                      ticks: { stroke: "rgba(155,188,15,0.25)" } };
  const opts = {
    width: chartWidth(box),
    height: 200,
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [
      { ...axisStyle },
      { ...axisStyle, scale: "y", size: 60, values: (u, ticks) => ticks.map((v) => formatValue(panel.unit, v)) },
      ...(hasRight ? [{ ...axisStyle, scale: "y2", side: 1, size: 60, grid: { show: false },
                        values: (u, ticks) => ticks.map((v) => formatValue(rightUnit, v)) }] : []),
    ],
    series: [
      {},
      ...panel.series.map((s, i) => ({
        label: s.name,
        scale: s.right ? "y2" : "y",
        stroke: PALETTE[i % PALETTE.length],
        width: 1.5,
        spanGaps: false,
        value: (u, v) => formatValue(s.right ? rightUnit : panel.unit, v),
      })),
    ],
  };
  const plot = new uPlot(opts, data, box.querySelector(".chart"));
  charts.set(panel.id, { plot, signature, box });
}

async function refresh() {
  const minutes = document.getElementById("range").value;
  try {
    const response = await fetch(`/v1/dashboard?minutes=${minutes}`);
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const answer = await response.json();
    const source = document.getElementById("source");
    const targets = (answer.targets || []).map(
      (t) => `${t.job} ${t.up ? "up" : "down"}`).join(", ");
    source.textContent = (answer.source === "prometheus"
      ? `from Prometheus at ${answer.prometheus_url}, every ${answer.step} s`
      : `from the services' /metrics, read by the generator every ${answer.step} s`) +
      (targets ? ` (${targets})` : "");
    document.getElementById("note").textContent = answer.note || "";
    for (const panel of answer.panels) draw(panel, answer.times);
    document.body.dataset.refreshed = String(Date.now());
  } catch (e) {
    document.getElementById("note").textContent = `cannot reach the generator: ${e.message || e}`;
  }
}

window.addEventListener("resize", () => {
  for (const { plot, box } of charts.values()) plot.setSize({ width: chartWidth(box), height: 200 });
});
document.getElementById("range").addEventListener("change", refresh);
refresh();
setInterval(refresh, REFRESH_MS);
