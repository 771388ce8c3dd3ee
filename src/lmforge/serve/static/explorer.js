// lmforge explorer: stream tokens from /api/generate, click one to see the distribution it came from.
// Plain JavaScript, no build step, nothing loaded from outside this server.
"use strict";
const $ = (id) => document.getElementById(id);
let controller = null;      // AbortController of the running stream (Stop aborts it: the server cancels)
let steps = [];             // Step records of the current generation
let promptIds = [];
let previous = null;        // tokens of the previous generation, to show where a regeneration diverged
let selected = null;
let barsController = null;  // the bars request in flight: a newer one (a slider moved again) aborts it

function settings() {
  const topK = +$("top_k").value;
  return { temperature: +$("temperature").value, top_k: topK, top_p: +$("top_p").value,
           max_tokens: +$("max_tokens").value, seed: +$("seed").value };
}

for (const id of ["temperature", "top_k", "top_p"]) {
  $(id).addEventListener("input", () => {
    $(id + "-v").textContent = id === "top_k" && +$(id).value === 0 ? "off" : $(id).value;
    if (selected !== null) showDistribution(selected);   // the bars follow the sliders
  });
}

function visible(text) { return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5"); }

function setRunning(running) {
  $("generate").disabled = running;
  $("stop").disabled = !running;
  $("regenerate").disabled = running || steps.length === 0;
}

async function generate() {
  if (steps.length) previous = steps.map((s) => s.token);
  steps = []; selected = null;
  $("output").innerHTML = ""; $("bars").innerHTML = ""; $("dist-meta").textContent = "";
  $("status").textContent = "generating…";
  controller = new AbortController();
  setRunning(true);
  let finish = "stopped";
  try {
    const resp = await fetch("/api/generate", { method: "POST", signal: controller.signal,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: $("prompt").value, ...settings() }) });
    if (!resp.ok) {
      const err = await resp.json();
      throw new Error(err.error ? err.error.message : resp.statusText);
    }
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut); buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.type === "prompt") { promptIds = ev.ids; addPrompt(ev.tokens.join("")); }
        else if (ev.type === "token") addToken(ev);
        else if (ev.type === "done") finish = ev.finish_reason;
      }
    }
    $("status").textContent = `${steps.length} tokens, finished: ${finish}` + divergence();
  } catch (e) {
    $("status").textContent = e.name === "AbortError" ? `stopped after ${steps.length} tokens` : "error: " + e.message;
  } finally {
    controller = null;
    setRunning(false);
  }
}

function divergence() {
  if (!previous) return "";
  const n = Math.min(previous.length, steps.length);
  for (let i = 0; i < n; i++) {
    if (previous[i] !== steps[i].token) {
      document.querySelector(`.tok[data-i="${i}"]`).classList.add("diverged");
      return `; diverged from the previous answer at token ${i}`;
    }
  }
  return "; same as the previous answer";
}

function addPrompt(text) {
  const span = document.createElement("span");
  span.className = "prompt"; span.textContent = text;
  $("output").appendChild(span);
}

function addToken(step) {
  steps.push(step);
  const span = document.createElement("span");
  span.className = "tok"; span.dataset.i = steps.length - 1;
  span.textContent = step.text;
  span.title = `p=${step.prob.toFixed(3)} model p=${step.raw_prob.toFixed(3)} rank ${step.rank}`;
  const unsure = Math.min(1, step.entropy / 4);     // background shade: entropy of the model's distribution
  span.style.background = `rgba(253, 174, 107, ${0.08 + 0.5 * unsure})`;
  span.addEventListener("click", () => showDistribution(+span.dataset.i));
  $("output").appendChild(span);
}

async function showDistribution(i) {
  selected = i;
  document.querySelectorAll(".tok.selected").forEach((el) => el.classList.remove("selected"));
  document.querySelector(`.tok[data-i="${i}"]`).classList.add("selected");
  const step = steps[i];
  $("dist-title").textContent = `Token #${i}: ${JSON.stringify(step.text)}`;
  $("dist-meta").textContent = `drawn with p = ${step.prob.toFixed(3)} (model ${step.raw_prob.toFixed(3)}), ` +
    `rank ${step.rank}, entropy ${step.entropy.toFixed(2)} nats` +
    (Object.keys(step.removed).length ? `; removed: ${Object.entries(step.removed).map(([k, v]) => `${k} ${v}`).join(", ")}` : "");
  // the context this token was predicted from: prompt + the tokens before it
  const ids = promptIds.concat(steps.slice(0, i).map((s) => s.token));
  if (barsController) barsController.abort();   // each request holds one of the server's --max-concurrent slots
  const controller = barsController = new AbortController();
  let resp, data;
  try {
    resp = await fetch("/api/distribution", { method: "POST", signal: controller.signal,
      headers: { "content-type": "application/json" }, body: JSON.stringify({ ids, n: 12, ...settings() }) });
    data = await resp.json();
  } catch (e) {
    if (e.name === "AbortError") return;
    throw e;
  } finally {
    if (barsController === controller) barsController = null;
  }
  if (!resp.ok) { $("status").textContent = "error: " + data.error.message; return; }
  if (selected !== i) return;
  const bars = $("bars");
  bars.innerHTML = "";
  for (const a of data.alternatives) {
    const row = document.createElement("div");
    row.className = "bar" + (a.token === step.token ? " chosen" : "") + (a.prob === 0 ? " removed" : "");
    row.dataset.token = a.token;
    row.innerHTML = `<span class="label"></span><span class="track"><span class="raw"></span><span class="final"></span></span><span class="p"></span>`;
    row.querySelector(".label").textContent = visible(a.text);
    row.querySelector(".raw").style.width = (100 * a.raw_prob).toFixed(1) + "%";
    row.querySelector(".final").style.width = (100 * a.prob).toFixed(1) + "%";
    row.querySelector(".p").textContent = a.prob.toFixed(3);
    row.title = `model ${a.raw_prob.toFixed(4)} -> ${a.prob.toFixed(4)}` + (a.removed_by ? ` (removed by ${a.removed_by})` : "");
    bars.appendChild(row);
  }
}

$("generate").addEventListener("click", generate);
$("regenerate").addEventListener("click", () => { $("seed").value = +$("seed").value + 1; generate(); });
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
fetch("/health").then((r) => r.json()).then((h) => { $("model").textContent = "model: " + h.model; });
