// pllm's page: chat (typed, or spoken into the microphone) with streamed answers and feedback on each, the profile,
// adapters and the privacy report.
// Plain JavaScript against the device API on the same origin; nothing is loaded from anywhere else.
"use strict";

const $ = (id) => document.getElementById(id);
const turns = []; // {role, content} sent as the conversation so far
const tokenInput = $("token");
tokenInput.value = sessionStorage.getItem("pllm-token") || "";
tokenInput.addEventListener("change", () => { sessionStorage.setItem("pllm-token", tokenInput.value); refresh(); });

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  if (tokenInput.value) h.Authorization = `Bearer ${tokenInput.value}`;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers(false) } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || `${res.status} ${res.statusText}`);
  return data;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// -- chat ---------------------------------------------------------------------------------------------------------
async function stream(messages, onText, temperature = 0, modality = "text") {
  const request = { model: $("model").value || "pllm", messages, stream: true, temperature };
  if (modality === "voice") request.metadata = { modality }; // answered short, logged as spoken
  const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(request) });
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    throw new Error((data.error && data.error.message) || `${res.status}`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", id = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      id = chunk.id || id;
      const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (piece) { text += piece; onText(text); }
    }
  }
  return { id, text };
}

function feedbackButtons(item, answer) {
  const bar = el("div", undefined, "actions");
  const send = async (kind, value, button) => {
    try {
      await api("/v1/feedback", { id: answer.id, kind, value });
      bar.querySelectorAll("button").forEach((b) => b.classList.remove("chosen"));
      if (button) button.classList.add("chosen");
    } catch (err) { item.title = err.message; }
  };
  const up = el("button", "good"); up.title = "a good answer: it becomes memory and training data"; up.dataset.kind = "up";
  up.onclick = () => send("up", null, up);
  const down = el("button", "bad"); down.title = "a bad answer"; down.dataset.kind = "down";
  down.onclick = () => send("down", null, down);
  const edit = el("button", "✎ edit"); edit.dataset.kind = "edit";
  edit.onclick = async () => {
    const better = window.prompt("The answer you wanted:", answer.text);
    if (!better || better === answer.text) return;
    await send("edit", better, edit);
    answer.text = better;
    item.firstChild.textContent = better;
    answer.turn.content = better;
  };
  const again = el("button", "↻ regenerate"); again.dataset.kind = "regenerate";
  again.onclick = async () => {
    await send("regenerate", null, again);
    const history = turns.slice(0, turns.indexOf(answer.turn));
    const fresh = await stream(history, (t) => { item.firstChild.textContent = t; }, 0.8);
    Object.assign(answer, { id: fresh.id, text: fresh.text });
    answer.turn.content = fresh.text;
  };
  bar.append(up, down, edit, again);
  return bar;
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (prompt) send(prompt, "text");
});

async function send(prompt, modality) {
  $("prompt").value = "";
  $("send").disabled = true;
  turns.push({ role: "user", content: prompt });
  $("log").append(el("li", prompt, "user"));
  const item = el("li", undefined, "assistant");
  item.append(el("span", "…"));
  $("log").append(item);
  try {
    const { id, text } = await stream(turns.slice(), (t) => { item.firstChild.textContent = t; }, 0, modality);
    const turn = { role: "assistant", content: text };
    turns.push(turn);
    item.firstChild.textContent = text;
    item.dataset.id = id;
    item.append(feedbackButtons(item, { id, text, turn }));
  } catch (err) {
    turns.pop();
    item.firstChild.textContent = `error: ${err.message}`;
  } finally {
    $("send").disabled = false;
    item.scrollIntoView({ block: "end" });
  }
}
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});

// -- the microphone: record, transcribe on the device (POST /v1/audio/transcriptions), ask ----------------------------
let recorder = null;
$("mic").addEventListener("click", async () => {
  const status = $("mic-status");
  if (recorder) { recorder.stop(); return; }
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) { status.textContent = `no microphone: ${err.message}`; return; }
  const chunks = [];
  recorder = new MediaRecorder(media);
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = async () => {
    media.getTracks().forEach((t) => t.stop());
    recorder = null;
    $("mic").classList.remove("recording");
    status.textContent = "transcribing…";
    const form = new FormData();
    form.append("file", new Blob(chunks, { type: chunks[0] ? chunks[0].type : "audio/webm" }), "speech.webm");
    form.append("model", "whisper-base");
    try {
      const res = await fetch("/v1/audio/transcriptions", { method: "POST", headers: headers(false), body: form });
      const data = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error((data.error && data.error.message) || `${res.status}`);
      status.textContent = data.text ? "" : "heard nothing: try again";
      if (data.text) send(data.text, "voice");
    } catch (err) { status.textContent = `error: ${err.message}`; }
  };
  recorder.start();
  $("mic").classList.add("recording");
  status.textContent = "listening… click the microphone again to send";
});

// -- a new user's first conversation: offered while the vault is empty, every question skippable ---------------------
async function loadOnboarding() {
  const panel = $("onboarding-panel");
  const form = $("onboarding");
  const offer = await api("/v1/profile/onboarding").catch(() => null);
  panel.hidden = !offer || !offer.offered || sessionStorage.getItem("pllm-onboarding-skipped") === "1";
  if (panel.hidden || form.querySelector("input")) return;
  for (const q of offer.questions) {
    const label = el("label", q.question, "question");
    const input = el("input");
    input.name = q.key;
    input.maxLength = 300;
    label.append(input);
    form.insertBefore(label, form.lastElementChild);
  }
}
$("onboarding").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answers = {};
  for (const input of $("onboarding").querySelectorAll("input")) if (input.value.trim()) answers[input.name] = input.value;
  try {
    const done = await api("/v1/profile/onboarding", answers);
    $("onboarding-panel").hidden = true;
    $("profile-hint").textContent = done.learned.length ? `noted: ${done.learned.map((f) => `${f.key}: ${f.value}`).join("; ")}` : "";
    refresh();
  } catch (err) { $("profile-hint").textContent = err.message; }
});
$("skip").onclick = () => { sessionStorage.setItem("pllm-onboarding-skipped", "1"); $("onboarding-panel").hidden = true; };

// -- models, profile, adapters, privacy ---------------------------------------------------------------------------
async function loadModels() {
  const select = $("model");
  const chosen = select.value;
  select.replaceChildren();
  for (const m of (await api("/v1/models")).data) {
    const option = el("option", m.kind === "base" ? `${m.id} (base, nothing personal)` : m.active ? `${m.id} (active)` : m.id);
    option.value = m.id;
    select.append(option);
  }
  if (chosen) select.value = chosen;
}

async function loadProfile() {
  const facts = $("facts");
  facts.replaceChildren();
  try {
    const profile = await api("/v1/profile");
    $("profile-hint").textContent = "";
    $("summary").textContent = profile.summary || "Nothing yet.";
    for (const f of [...profile.facts, ...profile.others]) {
      const row = el("li");
      row.append(el("span", f.subject ? `${f.subject}'s ${f.key}: ${f.value}` : `${f.key}: ${f.value}`));
      const forget = el("button", "forget");
      forget.onclick = async () => {
        if (!window.confirm(`Forget everything containing "${f.value}" for good?`)) return;
        const done = await api("/v1/profile/forget", { query: f.value });
        const retired = done.retired_adapters.length ? `; retired ${done.retired_adapters.join(", ")}` : "";
        $("profile-hint").textContent = `forgot ${done.documents} texts, ${done.facts} facts${retired}` +
          (done.retraining ? "; retraining without it" : "");
        refresh();
      };
      row.append(forget);
      facts.append(row);
    }
  } catch (err) {
    $("summary").textContent = "";
    $("profile-hint").textContent = `${err.message}`;
  }
}

async function loadAdapters() {
  const body = $("adapters").tBodies[0];
  body.replaceChildren();
  try {
    for (const v of (await api("/v1/adapters")).data) {
      const row = el("tr");
      const facts = v.facts !== undefined ? `${v.facts_after}/${v.facts}` : "-";
      row.append(el("td", v.version), el("td", v.active ? "active" : v.status), el("td", facts));
      const cell = el("td");
      if (!v.active && v.status !== "retired") {
        const promote = el("button", "promote");
        promote.onclick = async () => { await api(`/v1/adapters/${v.version}/promote`, {}); refresh(); };
        cell.append(promote);
      }
      row.append(cell);
      body.append(row);
    }
  } catch (err) { $("adapt-status").textContent = err.message; }
}

$("rollback").onclick = async () => {
  try { await api("/v1/adapters/rollback", {}); } catch (err) { $("adapt-status").textContent = err.message; }
  refresh();
};
$("adapt").onclick = async () => {
  try { await api("/v1/adapt", {}); followAdapt(); } catch (err) { $("adapt-status").textContent = err.message; }
};

async function followAdapt() {
  const status = await api("/v1/adapt").catch(() => null);
  if (!status) return;
  const bar = $("adapt-bar");
  bar.hidden = status.state !== "running";
  if (status.total) { bar.max = status.total; bar.value = status.step; }
  const eta = status.eta_s != null ? `, about ${status.eta_s} s left` : "";
  $("adapt-status").textContent =
    status.state === "running" ? (status.total ? `training: step ${status.step}/${status.total}, loss ${status.loss}${eta}` : `adapting: ${status.phase || "starting"}`)
    : status.state === "done" ? `${status.report.version}: ${status.report.promoted ? "promoted" : "not promoted"}, ${status.report.reason}`
    : status.state === "failed" ? `failed: ${status.error}` : "";
  if (status.state === "running") setTimeout(followAdapt, 1000);
  else if (status.state === "done") { loadAdapters(); loadModels(); }
}

async function loadPrivacy() {
  const list = $("egress");
  list.replaceChildren();
  try {
    const report = await api("/v1/privacy/report");
    const replaced = Object.entries(report.entities).map(([k, v]) => `${k} ${v}`).join(", ") || "nothing";
    $("privacy-totals").textContent = `${report.requests} requests, ${report.bytes} bytes; replaced: ${replaced}`;
    for (const e of report.egress.slice().reverse()) {
      const when = new Date(e.created_at * 1000).toLocaleString();
      list.append(el("li", `${when} → ${e.destination} (${e.purpose}, ${e.consent}): ${e.redacted_text}`));
    }
  } catch (err) { $("privacy-totals").textContent = err.message; }
}

function refresh() {
  loadOnboarding();
  loadModels().catch((err) => { $("adapt-status").textContent = err.message; });
  loadProfile();
  loadAdapters();
  loadPrivacy();
  followAdapt();
}
refresh();
