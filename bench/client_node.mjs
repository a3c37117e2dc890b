// bench/client_node.mjs: the openai-node column of `make bench`, the same scenarios as
// bench/client_imageroute.lua, with the official SDK (npm `openai`, installed into bench/ by
// bench/run.lua).
//
//    node bench/client_node.mjs SCENARIO BASE_URL OUTDIR N CONC TEST_JSON [PARTIALS]
//
// * `idle`: import the SDK and build a client, do nothing: the baseline process.
// * `batch` / `workers`: N `client.images.generate(...)` calls, CONC at a time (CONC async
//   workers pulling from one counter, awaited with Promise.all), each image decoded with
//   `Buffer.from(b64_json, "base64")` and written with `fs.promises.writeFile`. The two
//   scenarios are the same here (the SDK keeps nothing).
// * `stream`: N sequential calls with `stream: true, partial_images: PARTIALS`; for each partial
//   image event: decode it, then delay = now - event.server_time (now from
//   performance.timeOrigin + performance.now(), microseconds).
// * `stall`: N calls, CONC at a time, each image decoded with `Buffer.from` and dropped (no file:
//   the same work as the Lua client's `stall`), with perf_hooks.monitorEventLoopDelay
//   ({resolution: 1}) enabled from the first call to the last; prints `eld` {p50, p99, max, min,
//   mean, count} in seconds (a sample is the time between two runs of a 1 ms timer, so it
//   includes that 1 ms).
// * `fds`: as `batch`, after opening /dev/null until the process has FDS descriptors open
//   (FDS = the 8th argument, `fds=COUNT`); prints `open_fds`.
// * `b64`: no server; OUTDIR is a file of base64 text (the server's image), decoded N times with
//   `Buffer.from(text, "base64")`; prints the mean CPU seconds per decode (process.cpuUsage), for
//   comparison with the libb64 floor.
//
// TEST_JSON goes in the `x-imageroute-test` header. Prints one JSON line like the Lua client.

import fs from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import OpenAI from "openai";

const [scenario, baseURL, outdir, nArg, concArg, testJson = "{}", partialsArg = "0", extra = ""] =
  process.argv.slice(2);
const n = Number(nArg || 0);
const conc = Number(concArg || 1);
const partials = Number(partialsArg);

const client = new OpenAI({
  baseURL,
  apiKey: "bench",
  maxRetries: 0,
  defaultHeaders: { "x-imageroute-test": testJson },
});

const out = { images: 0, bytes: 0, errors: 0, delays: [] };
const nowSeconds = () => (performance.timeOrigin + performance.now()) / 1000;
const params = { model: "gpt-image-1", prompt: "a lighthouse at dawn", size: "1024x1024", quality: "low" };

function hwmKb() {
  try {
    const m = fs.readFileSync("/proc/self/status", "utf8").match(/VmHWM:\s*(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function saveB64(b64, i) {
  const bytes = Buffer.from(b64, "base64");
  await fs.promises.writeFile(`${outdir}/node-${i}.png`, bytes);
  out.images += 1;
  out.bytes += bytes.length;
}

async function one(i) {
  try {
    const res = await client.images.generate(params);
    await saveB64(res.data[0].b64_json, i);
  } catch (e) {
    out.errors += 1;
    out.last_error = String(e);
  }
}

async function oneStream(i) {
  try {
    const stream = await client.images.generate({ ...params, stream: true, partial_images: partials });
    for await (const ev of stream) {
      if (ev.type === "image_generation.partial_image") {
        const bytes = Buffer.from(ev.b64_json, "base64");
        const now = nowSeconds();
        if (bytes.length > 0 && typeof ev.server_time === "number") out.delays.push(now - ev.server_time);
      } else if (ev.type === "image_generation.completed") {
        await saveB64(ev.b64_json, i);
      }
    }
  } catch (e) {
    out.errors += 1;
    out.last_error = String(e);
  }
}

const t0 = performance.now();
if (scenario === "b64") {
  const text = fs.readFileSync(outdir, "latin1");
  let len = Buffer.from(text, "base64").length;
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) len = Buffer.from(text, "base64").length;
  const c = process.cpuUsage(c0);
  process.stdout.write(JSON.stringify({ iterations: n, out_bytes: len, mean: (c.user + c.system) / 1e6 / n }) + "\n");
  process.exit(0);
}
async function pool(fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next += 1;
      await fn(next);
    }
  };
  await Promise.all(Array.from({ length: Math.min(conc, n) }, worker));
}

if (scenario === "batch" || scenario === "workers") {
  await pool(one);
} else if (scenario === "stall") {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await pool(async () => {
    try {
      const res = await client.images.generate(params);
      const bytes = Buffer.from(res.data[0].b64_json, "base64");
      out.images += 1;
      out.bytes += bytes.length;
    } catch (e) {
      out.errors += 1;
      out.last_error = String(e);
    }
  });
  h.disable();
  out.eld = { p50: h.percentile(50) / 1e9, p99: h.percentile(99) / 1e9, max: h.max / 1e9, min: h.min / 1e9,
    mean: h.mean / 1e9, count: h.count };
} else if (scenario === "fds") {
  const want = Number((extra.match(/fds=(\d+)/) || [])[1] || 10);
  const openCount = () => fs.readdirSync("/proc/self/fd").length - 1; // minus readdir's own
  const files = [];
  for (let have = openCount(); have < want; have++) files.push(fs.openSync("/dev/null", "r"));
  out.open_fds = openCount();
  const t1 = performance.now();
  await pool(one);
  out.wall = (performance.now() - t1) / 1000;
  for (const f of files) fs.closeSync(f);
} else if (scenario === "stream") {
  for (let i = 1; i <= n; i++) await oneStream(i);
} else if (scenario !== "idle") {
  throw new Error(`unknown scenario ${scenario}`);
}
if (out.wall === undefined) out.wall = (performance.now() - t0) / 1000;
out.hwm_kb = hwmKb();
if (out.delays.length === 0) delete out.delays;
process.stdout.write(JSON.stringify(out) + "\n");
