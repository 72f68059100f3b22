// Elevation reports of the last 30 days from privilegeManagementElevations/summary ($filter per type):
// elevations per day by type (stacked bars), top files, users and devices (horizontal bars). Hand-written SVG.

import { api, ELEVATIONS, odata, quote } from "./api.js";
import { daysAgo, fileName, h } from "./dom.js";

const TYPES = [  // elevationType, label, CSS class of its color
  ["userConfirmedElevation", "User confirmed", "t1"], ["supportApprovedElevation", "Support approved", "t2"],
  ["zeroTouchElevation", "Automatic", "t3"], ["unmanagedElevation", "Unmanaged (Run as administrator)", "t4"],
];
const DAYS = 30;

const svg = (tag, attributes, ...children) => h(tag, attributes, ...children);

export async function renderReports(root) {
  root.replaceChildren(h("h1", {}, "Elevation reports"), h("p.muted", {}, "Loading…"));
  const since = daysAgo(DAYS);
  const range = `eventDateTime ge ${since}`;
  let all, perType;
  try {
    [all, ...perType] = await Promise.all([
      api(odata(`${ELEVATIONS}/summary`, { $filter: range, $top: 8 })),
      ...TYPES.map(([type]) => api(odata(`${ELEVATIONS}/summary`, { $filter: `${range} and elevationType eq '${type}'`, $top: 1 }))),
    ]);
  } catch (error) {
    root.replaceChildren(h("h1", {}, "Elevation reports"), h("p.error", { role: "alert" }, error.message));
    return;
  }
  const days = [...Array(DAYS).keys()].map((i) => new Date(Date.now() - (DAYS - 1 - i) * 86400000).toISOString().slice(0, 10));
  const byDay = perType.map((summary) => new Map(summary.byDay.map((b) => [b.key, b.count])));
  const [files, devices] = await Promise.all([names(all.topFiles, "hash", (e) => fileName(e.filePath)),
                                              names(all.topDevices, "deviceId", (e) => e.deviceName)]);
  root.replaceChildren(
    h("div.report-head", {}, h("h1", {}, "Elevation reports"), h("p.sub", {}, `Last ${DAYS} days · ${all.total} elevations`)),
    h("div.kpis", {}, TYPES.map(([, label, color], i) => h("div.kpi", {}, h(`span.swatch.${color}`, { "aria-hidden": "true" }),
      h("span.kpi-value", {}, String(perType[i].total)), h("span.sub", {}, label)))),
    h("section.card.chart", { "aria-labelledby": "h-days" }, h("h2#h-days", {}, "Elevations per day by type"),
      legend(), stacked(days, byDay)),
    h("div.charts", {},
      bars("Top files", all.topFiles, files), bars("Top users", all.topUsers, new Map()),
      bars("Top devices", all.topDevices, devices)));
}

/** key -> a readable name, from one elevation event with that key. */
async function names(buckets, property, name) {
  const pairs = await Promise.all(buckets.map(async ({ key }) => {
    const page = await api(odata(ELEVATIONS, { $filter: `${property} eq ${quote(key)}`, $top: 1 })).catch(() => null);
    return [key, page?.value[0] ? name(page.value[0]) || key : key];
  }));
  return new Map(pairs);
}

function legend() {
  return h("ul.legend", {}, TYPES.map(([, label, color]) => h("li", {}, h(`span.swatch.${color}`, { "aria-hidden": "true" }), label)));
}

function stacked(days, byDay) {
  const [width, height, left, right, bottom, above] = [900, 220, 36, 20, 24, 10];
  const totals = days.map((day) => byDay.reduce((sum, counts) => sum + (counts.get(day) || 0), 0));
  const unit = niceStep(Math.max(4, ...totals) / 4);
  const top = unit * Math.ceil(Math.max(4, ...totals) / unit);
  const step = (width - left - right) / days.length;
  const y = (n) => above + (height - bottom - above) * (1 - n / top);
  const ticks = [...Array(top / unit + 1).keys()].map((i) => i * unit);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "plot",
    "aria-label": `Elevations per day, last ${days.length} days: ${totals.reduce((a, b) => a + b, 0)} in all, at most ${Math.max(...totals)} a day` },
  ticks.map((t) => svg("g", {}, svg("line", { x1: left, x2: width, y1: y(t), y2: y(t), class: "grid" }),
    svg("text", { x: left - 6, y: y(t) + 4, "text-anchor": "end", class: "axis" }, String(t)))),
  days.map((day, i) => {
    let base = 0;
    return svg("g", {}, byDay.map((counts, t) => {
      const n = counts.get(day) || 0;
      if (!n) return null;
      const rect = svg("rect", { x: left + i * step + 2, width: step - 4, y: y(base + n), height: y(base) - y(base + n), class: TYPES[t][2] },
        svg("title", {}, `${day}: ${n} ${TYPES[t][1]}`));
      base += n;
      return rect;
    }), i % 5 === 4 || i === days.length - 1
      ? svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle", class: "axis" }, day.slice(5)) : null);
  }));
  const table = h("details", {}, h("summary", {}, "Show as a table"), h("table.compact", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day"), TYPES.map(([, label]) => h("th", { scope: "col" }, label)))),
    h("tbody", {}, days.map((day) => h("tr", {}, h("th", { scope: "row" }, day),
      byDay.map((counts) => h("td.num", {}, String(counts.get(day) || 0))))))));
  return [chart, table];
}

/** The smallest of 1, 2, 5, 10, 20, 50 ... that is at least `least`: gridlines at round numbers. */
function niceStep(least) {
  const power = 10 ** Math.floor(Math.log10(Math.max(1, least)));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= least);
}

function bars(title, buckets, labels) {
  const id = `h-${title.replace(/\W/g, "")}`;
  if (!buckets.length) return h("section.card.chart", { "aria-labelledby": id }, h("h2", { id }, title), h("p.muted", {}, "No elevations yet."));
  const [width, row, bar] = [460, 28, 220];  // bar: where the bars start, after the labels
  const most = Math.max(...buckets.map((b) => b.count));
  return h("section.card.chart", { "aria-labelledby": id }, h("h2", { id }, title),
    svg("svg", { viewBox: `0 0 ${width} ${buckets.length * row}`, role: "img", class: "plot",
      "aria-label": `${title}: ${buckets.map((b) => `${labels.get(b.key) || b.key} ${b.count}`).join(", ")}` },
    buckets.map((b, i) => svg("g", {},
      svg("text", { x: 0, y: i * row + 18, class: "label" }, truncate(labels.get(b.key) || b.key, 34)),
      svg("rect", { x: bar, y: i * row + 6, height: row - 12, width: Math.max(2, (width - bar - 40) * (b.count / most)), class: "t1" },
        svg("title", {}, `${labels.get(b.key) || b.key}: ${b.count}`)),
      svg("text", { x: bar + 6 + (width - bar - 40) * (b.count / most), y: i * row + 18, class: "value" }, String(b.count))))));
}

const truncate = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
