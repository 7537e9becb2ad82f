// The upload page: a small tus 1.0 client on fetch, one row per file, pause and resume,
// and (assets on) the asset's state until it settles. Plain browser APIs, no dependencies.
"use strict";

const TUS = { "Tus-Resumable": "1.0.0" };
const DEFAULT_CHUNK = 8 * 1024 * 1024;
const SETTLED = ["ready", "failed", "pending_payment"];
const POLL_MS = 500;

// `?chunk=BYTES` makes PATCHes smaller: progress is known per chunk (fetch reports no upload
// progress), and a pause loses at most the chunk in flight.
function chunkSize() {
  const value = Number.parseInt(new URLSearchParams(location.search).get("chunk") || "", 10);
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_CHUNK;
}

function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

// The server's own message: the asset API's JSON error, or the tus layer's text.
async function failure(response) {
  const text = await response.text().catch(() => "");
  try {
    const message = JSON.parse(text).error.message;
    if (message) return `${response.status}: ${message}`;
  } catch (_) { /* not the asset API's JSON */ }
  return `${response.status} ${response.statusText}${text ? `: ${text.trim()}` : ""}`;
}

class Upload {
  constructor(file, config, row) {
    this.file = file;
    this.config = config;
    this.row = row;
    this.url = null;
    this.assetId = null;
    this.offset = 0;
    this.controller = null;
    this.running = null;
    row.querySelector(".name").textContent = file.name;
    row.querySelector(".size").textContent = formatBytes(file.size);
    row.querySelector(".pause").addEventListener("click", () => this.pause());
    row.querySelector(".resume").addEventListener("click", () => this.resume());
    this.show("waiting");
  }

  show(status, error) {
    this.row.dataset.status = status;
    this.row.querySelector(".status").textContent = status;
    const busy = status === "creating" || status === "uploading";
    this.row.querySelector(".pause").hidden = !busy;
    this.row.querySelector(".resume").hidden = !(status === "paused" || (status === "error" && this.url));
    const box = this.row.querySelector(".error");
    box.hidden = !error;
    box.textContent = error || "";
  }

  progress() {
    const size = this.file.size;
    const percent = size === 0 ? 100 : Math.floor((this.offset / size) * 100);
    this.row.dataset.offset = String(this.offset);
    this.row.querySelector("progress").value = percent;
    this.row.querySelector(".percent").textContent = `${percent}% (${formatBytes(this.offset)})`;
  }

  showUrl() {
    this.row.dataset.url = this.url;
    const link = this.row.querySelector(".upload-url");
    link.href = this.url;
    link.textContent = this.url;
    link.hidden = false;
  }

  start() {
    if (!this.running) {
      this.running = this.run().finally(() => { this.running = null; });
    }
    return this.running;
  }

  pause() {
    if (this.controller) this.controller.abort();
  }

  async resume() {
    if (this.running) return;
    this.start();
  }

  async run() {
    this.controller = new AbortController();
    const signal = this.controller.signal;
    try {
      if (!this.url) {
        this.show("creating");
        await this.create(signal);
      } else {
        this.show("uploading");
        await this.readOffset(signal);
      }
      this.show("uploading");
      await this.send(signal);
      this.controller = null;
      this.show("uploaded");
      if (this.assetId) await this.watchAsset();
      else this.show("done");
    } catch (error) {
      this.controller = null;
      if (error.name === "AbortError") this.show("paused");
      else this.show("error", error.message);
    }
  }

  async create(signal) {
    if (this.config.assets) {
      const response = await fetch(`${this.config.api_path}/assets`, {
        method: "POST",
        signal,
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.config.key()}` },
        body: JSON.stringify({ project_id: this.config.project(), size: this.file.size }),
      });
      if (response.status !== 201) throw new Error(await failure(response));
      const asset = await response.json();
      this.assetId = asset.id;
      this.url = asset.upload_url;
      this.row.dataset.assetId = asset.id;
      this.showAssetState(asset.state);
    } else {
      const metadata = [`filename ${base64(this.file.name)}`];
      if (this.file.type) metadata.push(`filetype ${base64(this.file.type)}`);
      const response = await fetch(this.config.base_path, {
        method: "POST",
        signal,
        headers: { ...TUS, "Upload-Length": String(this.file.size), "Upload-Metadata": metadata.join(",") },
      });
      if (response.status !== 201) throw new Error(await failure(response));
      this.url = new URL(response.headers.get("Location"), location.href).href;
    }
    this.showUrl();
    this.offset = 0;
    this.progress();
  }

  // After a pause or a failure the server knows best: a PATCH cut short keeps its bytes.
  async readOffset(signal) {
    const response = await fetch(this.url, { method: "HEAD", signal, headers: TUS, cache: "no-store" });
    if (!response.ok) throw new Error(await failure(response));
    this.offset = Number.parseInt(response.headers.get("Upload-Offset"), 10);
    this.progress();
  }

  async send(signal) {
    const size = this.file.size;
    const chunk = this.config.chunk;
    while (this.offset < size) {
      const end = Math.min(this.offset + chunk, size);
      const response = await fetch(this.url, {
        method: "PATCH",
        signal,
        headers: { ...TUS, "Upload-Offset": String(this.offset), "Content-Type": "application/offset+octet-stream" },
        body: this.file.slice(this.offset, end),
      });
      if (response.status === 409) {
        // The offset moved under us (another tab, a lost answer): ask again and go on.
        await this.readOffset(signal);
        continue;
      }
      if (response.status !== 204) throw new Error(await failure(response));
      this.offset = Number.parseInt(response.headers.get("Upload-Offset"), 10);
      this.progress();
    }
  }

  showAssetState(state) {
    this.row.dataset.assetState = state;
    this.row.querySelector(".asset-state").textContent = state;
  }

  async watchAsset() {
    for (;;) {
      const response = await fetch(`${this.config.api_path}/assets/${encodeURIComponent(this.assetId)}`, {
        headers: { Authorization: `Bearer ${this.config.key()}` },
        cache: "no-store",
      });
      if (!response.ok) throw new Error(await failure(response));
      const asset = await response.json();
      this.showAssetState(asset.state);
      if (SETTLED.includes(asset.state)) {
        if (asset.state === "failed") this.show("failed", asset.error_message || asset.error_code);
        else this.show("done");
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

async function main() {
  const notice = document.getElementById("notice");
  let settings;
  try {
    const response = await fetch("web/config.json", { cache: "no-store" });
    settings = await response.json();
  } catch (error) {
    notice.textContent = `cannot read the server's settings: ${error.message}`;
    return;
  }
  const keyInput = document.getElementById("api-key");
  const projectInput = document.getElementById("project-id");
  const config = {
    ...settings,
    chunk: chunkSize(),
    key: () => keyInput.value.trim(),
    project: () => projectInput.value.trim(),
  };
  document.getElementById("credentials").hidden = !settings.assets;
  const list = document.getElementById("uploads");
  const template = document.getElementById("upload-row");

  function add(files) {
    if (settings.assets && (!config.key() || !config.project())) {
      notice.textContent = "Enter an API key and a project id first.";
      return;
    }
    notice.textContent = "";
    for (const file of files) {
      const row = template.content.firstElementChild.cloneNode(true);
      list.append(row);
      new Upload(file, config, row).start();
    }
  }

  const input = document.getElementById("files");
  input.addEventListener("change", () => {
    add(Array.from(input.files));
    input.value = "";
  });
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    add(Array.from(event.dataTransfer.files));
  });
  document.body.dataset.ready = "true";
}

main();
