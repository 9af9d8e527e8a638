// boxwatch operator console: a static single-page app over the /ops API (docs/operator-api.md).
// No build step: Leaflet and markercluster from vendor/ (never a CDN), this module, config.json.
import { I18N } from "./i18n.js";

const STATE_ORDER = ["normal", "alarm_acked", "offline", "alarm_unacked"]; // worst last
const STATE_COLOUR = { normal: "#2e7d32", alarm_acked: "#ef6c00", offline: "#757575", alarm_unacked: "#d50000" };
const POLL_MS = 1000; // a new alarm must show within 5 s: ingest + one poll, with room to spare
const $ = (sel) => document.querySelector(sel);

const S = {
  config: null, token: null, who: null, lang: localStorage.getItem("bw.lang") || "en",
  muted: localStorage.getItem("bw.muted") === "1",
  boxes: new Map(), markers: new Map(), alarms: new Map(), seenChanges: new Set(), cursor: null,
  incidents: new Map(), circles: new Map(), selected: null, map: null, cluster: null, pollTimer: null,
};
window.__console = S; // the browser tests read the map's state from here

// ------------------------------------------------------------------ i18n
function t(key, vars = {}) {
  const s = (I18N[S.lang] && I18N[S.lang][key]) || I18N.en[key] || key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ""));
}
function applyI18n() {
  document.documentElement.lang = S.lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("#lang").value = S.lang;
}
function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString(S.lang === "zh-CN" ? "zh-CN" : "en-GB", { hour12: false }) : "";
}
function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ------------------------------------------------------------------ API
async function api(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${S.token}`, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    if (!init.headers["Content-Type"]) init.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(S.config.api_url.replace(/\/$/, "") + path, init);
  if (resp.status === 401) { signOut(); throw new Error("signed out"); }
  if (raw) return resp;
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) { const e = new Error(doc.message || resp.statusText); e.status = resp.status; e.code = doc.error; throw e; }
  return doc;
}

// ------------------------------------------------------------------ sign-in
function showSignIn() {
  $("#app").hidden = true;
  $("#signin").hidden = false;
  $("#signin-pass-row").hidden = S.config.local_sign_in;
  $("#signin-hint").textContent = S.config.local_sign_in ? t("local_hint") : "";
}
function signOut() {
  sessionStorage.removeItem("bw.token");
  sessionStorage.removeItem("bw.who");
  clearInterval(S.pollTimer);
  location.reload();
}
function cognitoSignIn(user, password) {
  const AC = window.AmazonCognitoIdentity;
  const pool = new AC.CognitoUserPool({ UserPoolId: S.config.user_pool_id, ClientId: S.config.client_id });
  const cu = new AC.CognitoUser({ Username: user, Pool: pool });
  return new Promise((resolve, reject) => cu.authenticateUser(
    new AC.AuthenticationDetails({ Username: user, Password: password }),
    { onSuccess: (s) => resolve(s.getIdToken()), onFailure: reject,
      newPasswordRequired: () => reject(new Error(t("new_password_required"))) }));
}
async function signIn(ev) {
  ev.preventDefault();
  const user = $("#signin-user").value.trim();
  $("#signin-error").textContent = "";
  try {
    if (S.config.local_sign_in) {
      // the local cloud's sign-in (no Cognito): <name>@<org>, an operator of that org
      if (!/^[A-Za-z0-9_.-]+@[a-z0-9][a-z0-9_-]*$/.test(user)) throw new Error(t("local_hint"));
      S.token = `local:${user}+operators`;
      S.who = user;
    } else {
      const id = await cognitoSignIn(user, $("#signin-pass").value);
      const claims = id.decodePayload();
      if (!(claims["cognito:groups"] || []).includes("operators")) throw new Error(t("not_operator"));
      S.token = id.getJwtToken();
      S.who = `${claims.email || claims.phone_number || user}@${claims["custom:org"]}`;
    }
    sessionStorage.setItem("bw.token", S.token);
    sessionStorage.setItem("bw.who", S.who);
    start();
  } catch (e) {
    $("#signin-error").textContent = e.message || String(e);
  }
}

// ------------------------------------------------------------------ map
function markerIcon(state) {
  return L.divIcon({ className: "", iconSize: [16, 16], html: `<div class="box-marker state-${state}"></div>` });
}
function worst(states) {
  return states.reduce((w, s) => (STATE_ORDER.indexOf(s) > STATE_ORDER.indexOf(w) ? s : w), "normal");
}
function initMap() {
  // #view=lat,lng,zoom opens the map there (links, tests); else config.json's view; else Haidian
  const m = location.hash.match(/view=(-?[\d.]+),(-?[\d.]+),(\d+)/);
  const v = m ? { lat: +m[1], lng: +m[2], zoom: +m[3] } : S.config.view || { lat: 39.98, lng: 116.31, zoom: 15 };
  S.map = L.map("map", { minZoom: 6, maxZoom: 19 }).setView([v.lat, v.lng], v.zoom);
  if (S.config.tile_url) {
    L.tileLayer(S.config.tile_url, { maxZoom: 19, attribution: S.config.tile_attribution || "" }).addTo(S.map);
  }
  S.cluster = L.markerClusterGroup({
    disableClusteringAtZoom: 16, showCoverageOnHover: false, spiderfyOnMaxZoom: false,
    iconCreateFunction: (c) => {
      const state = worst(c.getAllChildMarkers().map((m) => m.options.boxState));
      const n = c.getChildCount();
      const size = n < 10 ? 30 : n < 100 ? 38 : 46;
      return L.divIcon({ className: "", iconSize: [size, size],
        html: `<div class="cluster cluster-${state}" data-state="${state}" style="width:${size}px;height:${size}px;background:${STATE_COLOUR[state]}">${n}</div>` });
    },
  });
  S.map.addLayer(S.cluster);
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => {
    const d = L.DomUtil.create("div", "legend");
    d.innerHTML = STATE_ORDER.slice().reverse().map((s) => `<div><i style="background:${STATE_COLOUR[s]}"></i>${esc(t("state_" + s))}</div>`).join("");
    return d;
  };
  legend.addTo(S.map);
  let timer = null;
  S.map.on("moveend", () => { clearTimeout(timer); timer = setTimeout(loadBoxes, 250); });
}
function upsertBox(box) {
  S.boxes.set(box.box_id, box);
  let m = S.markers.get(box.box_id);
  if (!m) {
    m = L.marker([box.lat, box.lng], { icon: markerIcon(box.state), boxState: box.state, title: `${box.box_id} ${box.name}` });
    m.on("click", () => openPanel(box.box_id));
    S.markers.set(box.box_id, m);
    S.cluster.addLayer(m);
  } else {
    if (m.options.boxState !== box.state) {
      m.options.boxState = box.state;
      m.setIcon(markerIcon(box.state));
      S.cluster.refreshClusters(m);
    }
    const ll = m.getLatLng();
    if (ll.lat !== box.lat || ll.lng !== box.lng) m.setLatLng([box.lat, box.lng]);
  }
}
async function loadBoxes() {
  const b = S.map.getBounds();
  const bbox = [b.getSouth(), Math.max(-180, b.getWest()), b.getNorth(), Math.min(180, b.getEast())].map((x) => x.toFixed(5)).join(",");
  let cursor = null;
  do {
    const q = `/ops/boxes?bbox=${bbox}&limit=200` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
    const doc = await api(q);
    doc.boxes.forEach(upsertBox);
    cursor = doc.next_cursor;
  } while (cursor);
}

// ------------------------------------------------------------------ alarms
function alarmRow(a) {
  const box = S.boxes.get(a.box_id);
  const unacked = a.state === "active" && !a.acked;
  const state = a.state === "cleared" ? t("cleared") : a.acked ? t("acked") : t("unacked");
  return `<tr class="alarm-row ${unacked ? "unacked" : ""} ${a.acked ? "acked" : ""}" data-alarm="${esc(a.alarm_id)}" data-box="${esc(a.box_id)}">
    <td>${esc(fmtTime(a.last_at || a.first_at))}</td><td>${esc(a.box_id)} ${esc(a.box_name || (box && box.name) || "")}</td>
    <td>${esc(t("cause_" + a.cause))}</td><td>${esc(state)}</td></tr>`;
}
function renderAlarms() {
  const cause = $("#f-cause").value;
  const unackedOnly = $("#f-unacked").checked;
  const rows = [...S.alarms.values()]
    .filter((a) => (!cause || a.cause === cause) && (!unackedOnly || !a.acked) && ($("#f-state").value === "all" || a.state === "active"))
    .sort((x, y) => (y.last_at || y.first_at) - (x.last_at || x.first_at));
  $("#alarms tbody").innerHTML = rows.map(alarmRow).join("");
  const causes = new Set([...S.alarms.values()].map((a) => a.cause));
  const sel = $("#f-cause");
  for (const c of causes) {
    if (![...sel.options].some((o) => o.value === c)) sel.add(new Option(t("cause_" + c), c));
  }
}
async function loadAlarms() {
  const state = $("#f-state").value;
  const doc = await api(`/ops/alarms?state=${state}&limit=200`);
  S.alarms.clear();
  doc.alarms.forEach((a) => S.alarms.set(`${a.box_id}/${a.alarm_id}`, a));
  renderAlarms();
}

// ------------------------------------------------------------------ live updates
function beep() {
  if (S.muted) return;
  try {
    const ctx = S.audio || (S.audio = new (window.AudioContext || window.webkitAudioContext)());
    const o = ctx.createOscillator(); const g = ctx.createGain();
    o.frequency.value = 880; o.connect(g); g.connect(ctx.destination);
    g.gain.setValueAtTime(0.2, ctx.currentTime); g.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.6);
    o.start(); o.stop(ctx.currentTime + 0.6);
    S.beeps = (S.beeps || 0) + 1;
  } catch (e) { /* no audio device: the toast is enough */ }
}
function toast(text) {
  const d = document.createElement("div");
  d.className = "toast";
  d.textContent = text;
  $("#toasts").appendChild(d);
  setTimeout(() => d.remove(), 8000);
}
async function poll() {
  if (S.polling) return; // a slow answer is not asked again on top of itself
  S.polling = true;
  try {
    const doc = await api(`/ops/changes?since=${S.cursor || ""}`);
    if (doc.reset) { S.cursor = doc.cursor; await Promise.all([loadBoxes(), loadAlarms()]); return; }
    S.cursor = doc.cursor;
    let alarmsChanged = false;
    for (const c of doc.changes) {
      if (S.seenChanges.has(c.key)) continue; // the feed re-reads a few seconds before its cursor
      S.seenChanges.add(c.key);
      if (c.type === "box" && c.entity) {
        upsertBox(c.entity);
        if (S.selected === c.id) openPanel(c.id);
      } else if (c.type === "alarm" && c.entity) {
        const isNew = !S.alarms.has(c.id);
        S.alarms.set(c.id, { ...(S.alarms.get(c.id) || {}), ...c.entity });
        alarmsChanged = true;
        if (isNew && c.entity.state === "active" && !c.entity.acked) {
          toast(t("new_alarm", { box: c.entity.box_id, name: c.entity.box_name || "", cause: t("cause_" + c.entity.cause) }));
          beep();
        }
      } else if (c.type === "command" && S.selected && c.entity && c.entity.box_id === S.selected) {
        openPanel(S.selected);
      }
    }
    if (alarmsChanged) renderAlarms();
  } catch (e) {
    console.warn("poll", e);
  } finally {
    S.polling = false;
  }
}

// ------------------------------------------------------------------ the alarm / box panel
async function openPanel(boxId) {
  S.selected = boxId;
  const p = $("#panel");
  let box;
  try { box = await api(`/ops/boxes/${encodeURIComponent(boxId)}`); } catch (e) { p.hidden = false; p.textContent = e.message; return; }
  const active = box.alarms.filter((a) => a.state === "active");
  p.hidden = false;
  p.dataset.box = boxId;
  p.innerHTML = `
    <h3>${esc(box.box_id)} · ${esc(box.name)}</h3>
    <div>${esc(box.address)}</div>
    <div>${box.lat.toFixed(5)}, ${box.lng.toFixed(5)} · <span class="panel-state">${esc(t("state_" + box.state))}</span> · ${esc(box.online ? t("online") : t("offline"))} ${esc(t("since"))} ${esc(fmtTime(box.status_since))} · <span class="panel-contactor">${esc(t("contactor"))}: ${esc(t("contactor_" + (box.contactor || "unknown")))}</span></div>
    ${active.map((a) => `<div class="ack-form" data-alarm="${esc(a.alarm_id)}">
      <b>${esc(t("cause_" + a.cause))}</b> ${a.value ?? ""} ${esc(a.unit || "")} (${esc(t("threshold"))} ${a.threshold ?? ""}) ${a.acked ? "✓ " + esc(t("acked")) : ""}
      ${a.acked ? "" : `<select class="disposition">${["real", "false_alarm", "test", "drill"].map((d) => `<option value="${d}">${esc(t("disp_" + d))}</option>`).join("")}</select>
      <input class="comment" placeholder="${esc(t("comment"))}"> <button class="ack">${esc(t("ack"))}</button>`}</div>`).join("")}
    <p><button id="power-off" class="danger">${esc(t("power_off"))}</button> <span id="power-off-result"></span></p>
    <h4>${esc(t("history"))}</h4>
    <table class="history"><tbody>${box.alarms.map((a) => `<tr><td>${esc(fmtTime(a.first_at))}</td><td>${esc(t("cause_" + a.cause))}</td><td>×${a.count}</td><td>${esc(a.state === "cleared" ? t("cleared") : t("active"))}</td><td>${a.acked ? esc(t("disp_" + a.disposition)) : ""}</td></tr>`).join("")}</tbody></table>
    <h4>${esc(t("nav_commands"))}</h4>
    <table class="box-commands"><tbody>${box.commands.map((c) => `<tr><td>${esc(fmtTime(c.requested_at))}</td><td>${esc(c.requested_by_role)}</td><td class="status">${esc(c.status)}</td><td>${esc(c.reason || "")}</td></tr>`).join("")}</tbody></table>`;
  p.querySelector("#power-off").onclick = () => confirmPowerOff(boxId);
  p.querySelectorAll(".ack-form .ack").forEach((btn) => {
    btn.onclick = async () => {
      const f = btn.closest(".ack-form");
      try {
        await api(`/ops/boxes/${encodeURIComponent(boxId)}/alarms/${encodeURIComponent(f.dataset.alarm)}/ack`, {
          method: "POST", body: { disposition: f.querySelector(".disposition").value, comment: f.querySelector(".comment").value } });
        const a = S.alarms.get(`${boxId}/${f.dataset.alarm}`);
        if (a) a.acked = true;
        renderAlarms();
        openPanel(boxId);
      } catch (e) { toast(e.message); }
    };
  });
}
function confirmPowerOff(boxId) {
  const dlg = $("#confirm-dialog");
  $("#confirm-text").textContent = t("confirm_power_off", { box: boxId });
  $("#confirm-input").value = "";
  dlg.returnValue = "";
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    const typed = $("#confirm-input").value.trim();
    const out = $("#power-off-result");
    try {
      const cmd = await api(`/ops/boxes/${encodeURIComponent(boxId)}/power-off`, {
        method: "POST", body: { confirm: typed }, headers: { "Idempotency-Key": `console-${crypto.randomUUID()}` } });
      out.textContent = `${t("command")} ${cmd.command_id}: ${cmd.status}`;
      watchCommand(boxId, cmd.command_id);
    } catch (e) {
      out.textContent = e.code === "confirmation_required" ? t("confirmation_required") : e.message;
    }
  };
  dlg.showModal();
}
async function watchCommand(boxId, commandId) {
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const doc = await api(`/ops/commands?box_id=${encodeURIComponent(boxId)}&limit=20`);
    const c = doc.commands.find((x) => x.command_id === commandId);
    if (c && c.status !== "pending") {
      if (S.selected === boxId) { await openPanel(boxId); $("#power-off-result").textContent = `${t("command")} ${commandId}: ${c.status}`; }
      return;
    }
  }
}

// ------------------------------------------------------------------ incidents, commands
async function loadIncidents() {
  const doc = await api("/ops/incidents?state=open");
  const open = new Set();
  for (const inc of doc.incidents) {
    open.add(inc.incident_id);
    if (!S.circles.has(inc.incident_id) && inc.area && inc.area.lat != null) {
      const c = L.circle([inc.area.lat, inc.area.lng], { radius: Math.max(inc.area.radius_m || 0, 100), color: "#6a1b9a", weight: 2, fillOpacity: 0.1 });
      c.bindTooltip(t("incident_tip", { n: inc.member_count }));
      c.addTo(S.map);
      S.circles.set(inc.incident_id, c);
    }
  }
  for (const [id, c] of S.circles) if (!open.has(id)) { c.remove(); S.circles.delete(id); }
  $("#incidents tbody").innerHTML = doc.incidents.map((i) => `<tr><td>${esc(i.incident_id)}</td><td>${esc(fmtTime(i.opened_at))}</td><td>${i.member_count}: ${esc(i.members.join(", "))}</td><td>${i.area && i.area.radius_m != null ? Math.round(i.area.radius_m) + " m" : ""}</td></tr>`).join("");
}
async function loadResolvedIncidents() {
  const doc = await api("/ops/incidents?state=resolved&limit=50");
  $("#incidents-resolved tbody").innerHTML = doc.incidents.map((i) => `<tr><td>${esc(i.incident_id)}</td><td>${esc(t("kind_" + i.kind))}</td><td>${esc(fmtTime(i.opened_at))}</td><td>${esc(fmtTime(i.resolved_at))}</td><td>${i.member_count}: ${esc(i.members.join(", "))}</td></tr>`).join("");
}
async function loadCommands() {
  const doc = await api("/ops/commands?limit=100");
  $("#commands tbody").innerHTML = doc.commands.map((c) => `<tr><td>${esc(fmtTime(c.requested_at))}</td><td>${esc(c.box_id)}</td><td>${esc(c.requested_by_role)}</td><td>${esc(c.status)}</td><td>${esc(c.reason || "")}</td></tr>`).join("");
}

// ------------------------------------------------------------------ registry
async function importCsv() {
  const text = $("#csv-text").value;
  $("#csv-progress").hidden = false;
  $("#csv-result").textContent = t("importing");
  try {
    const doc = await api("/ops/boxes/import", { method: "POST", body: text, headers: { "Content-Type": "text/csv" } });
    $("#csv-result").textContent = t("imported", { n: doc.imported, r: doc.refused.length });
    $("#refused tbody").innerHTML = doc.refused.map((r) => `<tr class="refused-row"><td>${r.line}</td><td>${esc(r.id)}</td><td>${esc(r.reason)}</td></tr>`).join("");
    loadBoxes();
  } catch (e) {
    $("#csv-result").textContent = e.message;
  } finally {
    $("#csv-progress").hidden = true;
  }
}

// ------------------------------------------------------------------ monthly report
function barChart(rows) {
  const byCause = {};
  rows.forEach((r) => { byCause[r.cause] = (byCause[r.cause] || 0) + r.alarms; });
  const entries = Object.entries(byCause);
  const w = 480, h = 200, pad = 30, max = Math.max(1, ...entries.map((e) => e[1]));
  const bw = entries.length ? (w - 2 * pad) / entries.length : 0;
  const bars = entries.map(([c, n], i) => {
    const bh = (h - 2 * pad) * n / max;
    const x = pad + i * bw + 4, y = h - pad - bh;
    return `<rect x="${x}" y="${y}" width="${bw - 8}" height="${bh}" fill="#4ea1ff"><title>${esc(c)}: ${n}</title></rect>
      <text x="${x + (bw - 8) / 2}" y="${h - pad + 14}" font-size="11" text-anchor="middle">${esc(t("cause_" + c))}</text>
      <text x="${x + (bw - 8) / 2}" y="${y - 3}" font-size="11" text-anchor="middle">${n}</text>`;
  }).join("");
  return `<svg width="${w}" height="${h}" role="img" aria-label="${esc(t("alarms"))}"><line x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}" stroke="#889"/>${bars}</svg>`;
}
async function loadReport() {
  const month = $("#report-month").value;
  const doc = await api(`/ops/reports/monthly?month=${month}`);
  $("#report tbody").innerHTML = doc.rows.map((r) => `<tr><td>${esc(r.box_id)} ${esc(r.box_name)}</td><td>${esc(t("cause_" + r.cause))}</td><td>${r.alarms}</td><td>${(r.false_alarm_rate * 100).toFixed(1)}%</td><td>${r.ack_p50_s ?? "–"}</td><td>${r.ack_p90_s ?? "–"}</td><td>${r.offline_hours}</td></tr>`).join("");
  $("#report-chart").innerHTML = barChart(doc.rows);
}
async function downloadCsv(ev) {
  ev.preventDefault();
  const resp = await api(`/ops/reports/monthly?month=${$("#report-month").value}`, { headers: { Accept: "text/csv" }, raw: true });
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url; a.download = `boxwatch-${$("#report-month").value}.csv`; a.click();
  URL.revokeObjectURL(url);
}

// ------------------------------------------------------------------ views and start
function showView(name) {
  document.querySelectorAll("header nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  if (name === "map") setTimeout(() => S.map.invalidateSize(), 0);
  if (name === "incidents") { loadIncidents(); loadResolvedIncidents(); }
  if (name === "commands") loadCommands();
  if (name === "report") loadReport();
}
async function start() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#who").textContent = S.who;
  applyI18n();
  if (!S.map) initMap();
  const first = await api("/ops/changes"); // the cursor before the first load: nothing is missed in between
  S.cursor = first.cursor;
  await Promise.all([loadBoxes(), loadAlarms(), loadIncidents()]);
  S.pollTimer = setInterval(poll, POLL_MS);
  setInterval(loadIncidents, 10000);
  document.body.dataset.ready = "1";
}
async function main() {
  S.config = await (await fetch("config.json", { cache: "no-store" })).json();
  applyI18n();
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").onclick = signOut;
  $("#lang").onchange = () => { S.lang = $("#lang").value; localStorage.setItem("bw.lang", S.lang); applyI18n(); renderAlarms(); };
  $("#mute").checked = S.muted;
  $("#mute").onchange = () => { S.muted = $("#mute").checked; localStorage.setItem("bw.muted", S.muted ? "1" : "0"); };
  document.querySelectorAll("header nav button").forEach((b) => { b.onclick = () => showView(b.dataset.view); });
  ["#f-state"].forEach((s) => { $(s).onchange = loadAlarms; });
  ["#f-cause", "#f-unacked"].forEach((s) => { $(s).onchange = renderAlarms; });
  $("#alarms tbody").addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) openPanel(tr.dataset.box); });
  $("#csv-file").onchange = async (ev) => { const f = ev.target.files[0]; if (f) $("#csv-text").value = await f.text(); };
  $("#csv-import").onclick = importCsv;
  $("#report-month").value = new Date().toISOString().slice(0, 7);
  $("#report-load").onclick = loadReport;
  $("#report-csv").onclick = downloadCsv;
  S.token = sessionStorage.getItem("bw.token");
  S.who = sessionStorage.getItem("bw.who");
  if (S.token) start(); else showSignIn();
}
main();
