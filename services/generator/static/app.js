// The generator page: parameters -> a streamed song in the <audio> player, its piano
// roll on a canvas, and download links. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("params");
const player = $("player");
const statusLine = $("status");
const COLORS = ["--ch0", "--ch1", "--ch2", "--ch3"].map(
  (v) => getComputedStyle(document.documentElement).getPropertyValue(v).trim());

let roll = null;          // the song's piano roll (JSON from the server)
let objectUrls = [];      // blob URLs to release when the next song comes

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

async function checkModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    $("seconds").max = Math.floor(health.max_seconds);
    $("model").textContent = health.model_loaded
      ? `model: ${health.checkpoint} (training step ${health.step})`
      : `no model yet: waiting for the trainer's first checkpoint in ${health.checkpoint_dir}`;
  } catch (e) {
    $("model").textContent = "cannot reach the generator";
  }
}

function params() {
  return {
    seconds: Number($("seconds").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
    seed: Math.max(0, Math.floor(Number($("seed").value) || 0)),
  };
}

function songUrl(p, ext) {
  const q = new URLSearchParams({
    seconds: p.seconds, temperature: p.temperature, top_p: p.top_p,
  });
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
      for (const ext of ["wav", "vgm", "avro"]) {
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
      const [vgm, avro] = await Promise.all(
        ["vgm", "avro"].map(async (f) => (await postSong(body, f)).blob()));
      blobLink("dl-vgm", vgm, `gbsynth-seed${p.seed}-continued.vgm`);
      blobLink("dl-avro", avro, `gbsynth-seed${p.seed}-continued.avro`);
    }
    const data = await rollResponse.json();
    roll = data.piano_roll;
    const s = data.song;
    $("about").textContent =
      `${s.events} register writes · model step ${s.model_step} · ` +
      `checkpoint ${s.checkpoint_sha256.slice(0, 12)} · song ${s.key.slice(0, 16)}`;
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
checkModel();
setInterval(checkModel, 15000);
requestAnimationFrame(tick);
