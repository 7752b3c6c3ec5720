// The generator page: parameters -> a streamed song in the <audio> player, its piano
// roll on a canvas with a cursor that follows the player, download links (WAV, VGM, a Game
// Boy ROM, the event log), the served model's facts, and this browser's songs (localStorage)
// to play again. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("params");
const player = $("player");
const statusLine = $("status");
const COLORS = ["--ch0", "--ch1", "--ch2", "--ch3"].map(
  (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim());

let roll = null;          // the song's piano roll (JSON from the server)
let objectUrls = [];      // blob URLs to release when the next song comes
const FORMATS = ["wav", "vgm", "gb", "avro"];
const SONGS_KEY = "gbsynth.songs";
const MAX_SONGS = 50;
let servedStep = null;    // step of the model being served

function say(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

function bindOutput(name, format) {
  const input = $(name), out = $(name + "-out");
  const show = () => { out.textContent = format(Number(input.value)); };
  input.addEventListener("input", show);
  show();
}
bindOutput("seconds", (v) => `${Math.floor(v / 60)}:${String(v % 60).padStart(2, "0")}`);
bindOutput("temperature", (v) => v.toFixed(2));
bindOutput("top_p", (v) => v.toFixed(2));

$("dice").addEventListener("click", () => {
  const buf = new Uint32Array(1);
  crypto.getRandomValues(buf);
  $("seed").value = buf[0];
});

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error || JSON.stringify(body);
  } catch (e) {
    return `${response.status} ${response.statusText}`;
  }
}

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 2 * 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

// A card's data entry as a line: {"gb_train": {"tracks": 40, "hours": 1.5}} reads
// "gb_train (40 tracks, 1.5 hours)".
function describeData(value, depth = 0) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value.map((v) => describeData(v, depth + 1)).join(", ");
  if (typeof value === "object") {
    return Object.entries(value).map(([k, v]) => {
      if (typeof v === "number") return `${v.toLocaleString()} ${k}`;
      if (v !== null && typeof v === "object") return `${k} (${describeData(v, depth + 1)})`;
      return `${k}: ${describeData(v, depth + 1)}`;
    }).join(depth === 0 ? "; " : ", ");
  }
  return String(value);
}

// What the served model was trained on: its card says best (held-out parts left out: they
// are what it was not trained on); else the trainer's dataset.
function trainedOn(info) {
  const card = info.card || {};
  for (const key of ["data", "trained_on", "dataset", "training_data"]) {
    let value = card[key];
    if (value && typeof value === "object" && !Array.isArray(value)) {
      value = Object.fromEntries(
        Object.entries(value).filter(([k]) => !/held|test|valid/i.test(k)));
    }
    const text = describeData(value);
    if (text) return text;
  }
  const trainer = info.trainer || {};
  if (trainer.dataset_segments !== undefined) {
    return `${trainer.dataset_segments} segments of this pipeline's recordings`;
  }
  return "not recorded in the checkpoint";
}

async function modelFacts() {
  const facts = $("model-facts");
  const response = await fetch("/v1/model");
  if (!response.ok) { facts.textContent = ""; return; }
  const info = await response.json();
  const parts = [];
  if (info.age_seconds !== undefined) parts.push(`made ${age(info.age_seconds)} ago`);
  if (info.heldout_nll !== undefined) parts.push(`held-out NLL ${info.heldout_nll.toFixed(3)}`);
  if (info.train_loss !== undefined) parts.push(`training loss ${info.train_loss.toFixed(3)}`);
  if (info.parameters !== undefined) parts.push(`${(info.parameters / 1e6).toFixed(2)}M parameters`);
  if (info.heldout_nats_per_second !== undefined) {
    parts.push(`${info.heldout_nats_per_second.toFixed(1)} nats/s held out`);
  }
  parts.push(`trained on: ${trainedOn(info)}`);
  const card = info.card || {};
  const heldOut = describeData(card.heldout_music);
  if (heldOut) parts.push(`held out: ${heldOut}`);
  const title = card.name || card.title;
  facts.textContent = (title ? `${title} · ` : "") + parts.join(" · ");
}

async function checkModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("seconds").max = Math.floor(health.max_seconds);
    servedStep = health.model_loaded ? health.step : null;
    $("model").textContent = health.model_loaded
      ? `model: ${health.checkpoint} (training step ${health.step})`
      : `no model yet: waiting for the trainer's first checkpoint in ${health.checkpoint_dir}`;
    if (health.model_loaded) await modelFacts(); else $("model-facts").textContent = "";
    renderSongs();
  } catch (e) {
    $("model").textContent = "cannot reach the generator";
  }
}

// -- this browser's songs --------------------------------------------------------------------
function loadSongs() {
  try {
    const songs = JSON.parse(localStorage.getItem(SONGS_KEY) || "[]");
    return Array.isArray(songs) ? songs : [];
  } catch (e) {
    return [];
  }
}

function rememberSong(song) {
  const songs = loadSongs().filter((s) => s.key !== song.key);
  songs.unshift(song);
  try {
    localStorage.setItem(SONGS_KEY, JSON.stringify(songs.slice(0, MAX_SONGS)));
  } catch (e) { /* storage full or off: the list is a convenience */ }
  renderSongs();
}

function renderSongs() {
  const songs = loadSongs();
  const list = $("songs");
  list.replaceChildren();
  $("history-empty").hidden = songs.length > 0;
  $("forget").hidden = songs.length === 0;
  for (const song of songs) {
    const item = document.createElement("li");
    const what = document.createElement("span");
    what.className = "what";
    const when = new Date(song.made_at).toLocaleString();
    what.textContent = `seed ${song.seed} · ${song.seconds} s · temperature ` +
      `${Number(song.temperature).toFixed(2)} · top-p ${Number(song.top_p).toFixed(2)} · ` +
      `plan ${song.plan || "?"} · step ${song.model_step} · ${when}` +
      (song.primed ? " · continued a file" : "");
    item.appendChild(what);
    if (song.primed) {
      const note = document.createElement("span");
      note.textContent = "(needs its file to play again)";
      item.appendChild(note);
    } else {
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = "Play again";
      play.className = "replay";
      if (servedStep !== null && servedStep !== song.model_step) {
        play.title = `the model is now at step ${servedStep}: a different song`;
      }
      play.addEventListener("click", () => playAgain(song));
      item.appendChild(play);
      for (const ext of FORMATS.slice(0, 3)) {
        const link = document.createElement("a");
        link.href = songUrl(song, ext);
        link.download = `gbsynth-seed${song.seed}-${song.seconds}s.${ext}`;
        link.textContent = ext.toUpperCase();
        item.appendChild(link);
      }
    }
    list.appendChild(item);
  }
}

function playAgain(song) {
  const set = (id, v) => { $(id).value = v; $(id).dispatchEvent(new Event("input")); };
  set("seconds", song.seconds);
  set("temperature", song.temperature);
  set("top_p", song.top_p);
  set("plan", song.plan_asked || "");
  set("seed", song.seed);
  $("prime").value = "";
  form.requestSubmit();
}

$("forget").addEventListener("click", () => {
  localStorage.removeItem(SONGS_KEY);
  renderSongs();
});

function params() {
  return {
    seconds: Number($("seconds").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    seed: Math.max(0, Math.floor(Number($("seed").value) || 0)),
    plan: $("plan").value.trim(),
  };
}

function songUrl(p, ext) {
  const q = new URLSearchParams({
    seconds: p.seconds, temperature: p.temperature, top_p: p.top_p,
  });
  const plan = "plan_asked" in p ? p.plan_asked : p.plan;  // a remembered song: as asked
  if (plan) q.set("plan", plan);
  return `/v1/songs/${p.seed}.${ext}?${q}`;
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function postSong(body, format) {
  const response = await fetch("/v1/songs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...body, format }),
  });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

function blobLink(id, blob, name) {
  const url = URL.createObjectURL(blob);
  objectUrls.push(url);
  $(id).href = url;
  $(id).download = name;
}

async function generate(event) {
  event.preventDefault();
  const button = $("generate");
  button.disabled = true;
  objectUrls.forEach((u) => URL.revokeObjectURL(u));
  objectUrls = [];
  roll = null;
  drawRoll();
  const p = params();
  const started = performance.now();
  let finished = false, playingAfter = null;
  const primeFile = $("prime").files[0];
  say(`sampling ${p.seconds} s of music…`);
  $("result").hidden = false;
  try {
    let rollResponse;
    if (!primeFile) {
      // A plain URL: the player starts while the rest is still being sampled.
      const wavUrl = songUrl(p, "wav");
      player.src = wavUrl;
      player.addEventListener("playing", () => {
        playingAfter = (performance.now() - started) / 1000;
        if (!finished) say(`playing after ${playingAfter.toFixed(2)} s; sampling the rest…`);
      }, { once: true });
      player.play().catch(() => {});   // autoplay may be refused: the controls remain
      for (const ext of FORMATS) {
        $(`dl-${ext}`).href = songUrl(p, ext);
        $(`dl-${ext}`).download = `gbsynth-seed${p.seed}-${p.seconds}s.${ext}`;
      }
      // Ask for the piano roll once the audio stream has begun: the server then shares the
      // song being sampled for the player instead of making the player wait for it.
      await new Promise((resolve) => {
        for (const name of ["loadedmetadata", "error"]) {
          player.addEventListener(name, resolve, { once: true });
        }
        setTimeout(resolve, 5000);
      });
      rollResponse = await fetch(songUrl(p, "json"));
      if (!rollResponse.ok) throw new Error(await errorText(rollResponse));
    } else {
      const body = { ...p, prime: { file: await readBase64(primeFile) } };
      const wav = await (await postSong(body, "wav")).blob();
      const wavUrl = URL.createObjectURL(wav);
      objectUrls.push(wavUrl);
      player.src = wavUrl;
      player.play().catch(() => {});
      blobLink("dl-wav", wav, `gbsynth-seed${p.seed}-continued.wav`);
      rollResponse = await postSong(body, "json");
      const files = await Promise.all(
        ["vgm", "gb", "avro"].map(async (f) => (await postSong(body, f)).blob()));
      ["vgm", "gb", "avro"].forEach((f, i) => {
        blobLink(`dl-${f}`, files[i], `gbsynth-seed${p.seed}-continued.${f}`);
      });
    }
    const data = await rollResponse.json();
    roll = data.piano_roll;
    const s = data.song;
    $("about").textContent =
      `plan ${s.plan} · ${s.events} register writes · model step ${s.model_step} · ` +
      `checkpoint ${s.checkpoint_sha256.slice(0, 12)} · song ${s.key.slice(0, 16)}`;
    rememberSong({
      key: s.key, seed: s.seed, seconds: p.seconds, temperature: s.temperature,
      top_p: s.top_p, model_step: s.model_step, checkpoint: s.checkpoint_sha256.slice(0, 12),
      events: s.events, primed: s.primed, made_at: Date.now(), plan: s.plan, plan_asked: p.plan,
    });
    finished = true;
    const total = ((performance.now() - started) / 1000).toFixed(2);
    say(`done in ${total} s` +
        (playingAfter === null ? "" : `; playing after ${playingAfter.toFixed(2)} s`));
    drawRoll();
  } catch (e) {
    say(String(e.message || e), true);
    if (!roll) {                       // nothing to show: no player, no roll
      player.removeAttribute("src");
      player.load();
      $("result").hidden = true;
    }
  } finally {
    button.disabled = false;
  }
}

player.addEventListener("error", async () => {
  if (!player.src || player.src.startsWith("blob:")) return;
  // The element hides HTTP errors: ask again for the JSON body that explains it.
  const response = await fetch(player.src, { method: "GET" });
  if (!response.ok) say(await errorText(response), true);
});

function drawRoll() {
  const canvas = $("roll");
  const ctx = canvas.getContext("2d");
  const width = canvas.width, height = canvas.height;
  ctx.clearRect(0, 0, width, height);
  if (!roll) return;
  const noiseBand = 60;                       // the noise channel gets its own strip
  const toneHeight = height - noiseBand - 8;
  const tones = roll.channels.filter((c) => c.kind === "tone").flatMap((c) => c.notes);
  let lo = 36, hi = 96;                        // C2..C7 unless the song goes beyond
  for (const n of tones) { lo = Math.min(lo, n[2]); hi = Math.max(hi, n[2]); }
  lo = Math.max(lo - 1, 0); hi = Math.min(hi + 1, 140);
  const x = (t) => (t / roll.seconds) * width;
  const rowHeight = toneHeight / (hi - lo + 1);
  // Octave lines at each C.
  ctx.strokeStyle = "rgba(155,188,15,0.15)";
  for (let m = Math.ceil(lo / 12) * 12; m <= hi; m += 12) {
    const y = toneHeight - (m - lo + 1) * rowHeight;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(width, y); ctx.stroke();
  }
  roll.channels.forEach((channel, index) => {
    ctx.fillStyle = COLORS[index] || "#fff";
    for (const [start, end, pitch, level] of channel.notes) {
      ctx.globalAlpha = 0.35 + 0.65 * Math.min(1, level * 1.5);
      if (channel.kind === "tone") {
        const y = toneHeight - (pitch - lo + 1) * rowHeight;
        ctx.fillRect(x(start), y, Math.max(1, x(end) - x(start)), Math.max(1.5, rowHeight - 0.5));
      } else {
        // Noise "pitch" is log2 of its clock (about 2..19): higher hiss draws higher.
        const y = height - 4 - ((pitch - 1) / 19) * (noiseBand - 8);
        ctx.fillRect(x(start), y - 3, Math.max(1, x(end) - x(start)), 6);
      }
    }
  });
  ctx.globalAlpha = 1;
  ctx.strokeStyle = "rgba(155,188,15,0.4)";
  ctx.beginPath(); ctx.moveTo(0, toneHeight + 4); ctx.lineTo(width, toneHeight + 4); ctx.stroke();
  // Where the player is.
  const t = player.currentTime || 0;
  ctx.strokeStyle = "#ffffff";
  ctx.beginPath(); ctx.moveTo(x(t), 0); ctx.lineTo(x(t), height); ctx.stroke();
}

function tick() {
  if (roll && !player.paused) drawRoll();
  requestAnimationFrame(tick);
}

form.addEventListener("submit", generate);
player.addEventListener("seeked", drawRoll);
renderSongs();
checkModel();
setInterval(checkModel, 15000);
requestAnimationFrame(tick);
