// BullMQ's side of the peers bench (bench/peers/bullmq_peer.py runs it, with NODE_PATH at .bench/node).
//   node bullmq.cjs enqueue URL N KIND   addBulk in chunks of 1,000; prints {"seconds": ...}
//   node bullmq.cjs batch URL N          one FlowProducer.add: a parent and N children; prints {"t0": ...}
//   node bullmq.cjs worker URL CONCURRENCY
// The worker times itself as bench/peers/timing.py does: the process whose end() is the
// BENCH_N-th writes the wall time of its first begin() and of that end() to BENCH_TIMING.
"use strict";
const fs = require("fs");
const { Queue, Worker, FlowProducer } = require("bullmq");

const QUEUE = "bench";
const CHUNK = 1000;
const PAYLOAD = { user_id: 12345, action: "resize", size: [640, 480], tag: "bench" };

function connection(url) {
  const u = new URL(url);
  if (u.hostname !== "127.0.0.1" && u.hostname !== "localhost") throw new Error(`refusing ${url}`);
  const db = Number(u.pathname.replace("/", "") || 0);
  return { host: u.hostname, port: Number(u.port), db, maxRetriesPerRequest: null };
}

function write(path, record) {
  const tmp = `${path}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(record));
  fs.renameSync(tmp, path);
}

const target = Number(process.env.BENCH_N || 0);
let first = null;
let count = 0;

function begin() {
  if (first === null) first = Date.now() / 1000;
}

function end() {
  count += 1;
  if (count === target && process.env.BENCH_TIMING && first !== null) {
    write(process.env.BENCH_TIMING, { first, last: Date.now() / 1000, count, pid: process.pid });
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function enqueue(url, n, kind) {
  const queue = new Queue(QUEUE, { connection: connection(url) });
  await queue.waitUntilReady();
  const t0 = process.hrtime.bigint();
  for (let start = 0; start < n; start += CHUNK) {
    const jobs = [];
    for (let i = start; i < Math.min(n, start + CHUNK); i++) jobs.push({ name: kind, data: PAYLOAD });
    await queue.addBulk(jobs);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await queue.close();
  console.log(JSON.stringify({ seconds }));
}

async function batch(url, n) {
  const flow = new FlowProducer({ connection: connection(url) });
  await flow.waitUntilReady();
  const children = [];
  for (let i = 0; i < n; i++) children.push({ name: "noop", queueName: QUEUE, data: PAYLOAD });
  const t0 = Date.now() / 1000;
  await flow.add({ name: "callback", queueName: QUEUE, data: {}, children });
  await flow.close();
  console.log(JSON.stringify({ t0 }));
}

async function work(url, concurrency) {
  const worker = new Worker(
    QUEUE,
    async (job) => {
      if (job.name === "callback") {
        if (process.env.BENCH_CALLBACK) write(process.env.BENCH_CALLBACK, { t: Date.now() / 1000, pid: process.pid });
        return;
      }
      begin();
      if (job.name === "sleep") await sleep(10);
      end();
    },
    { connection: connection(url), concurrency },
  );
  const stop = async () => {
    await worker.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  await worker.waitUntilReady();
}

async function main() {
  const [mode, url, arg, kind] = process.argv.slice(2);
  if (mode === "enqueue") await enqueue(url, Number(arg), kind || "noop");
  else if (mode === "batch") await batch(url, Number(arg));
  else if (mode === "worker") await work(url, Number(arg));
  else throw new Error(`unknown mode ${mode}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
