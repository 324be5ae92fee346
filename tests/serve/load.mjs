// load.mjs: a bounded load test of `ramp serve` (plain fetch, no packages).
//
//   node load.mjs --base http://127.0.0.1:PORT --requests 200 --clients 32 --label "1 process"
//
// 1. A pool of distinct requests (completions and chat, prompts of 1-30 words, max_tokens 1-32,
//    mostly greedy, some seeded samples, some with stop strings) is answered one at a time: the
//    sequential answers.
// 2. --requests requests drawn from the pool are sent by --clients concurrent clients: about a
//    third streamed, about a tenth streamed and aborted after a few chunks (cancelled mid-stream).
// 3. Every answered request must equal its sequential answer (text, finish_reason, usage): an
//    answer never depends on what else is in flight. No 5xx (no non-200 at all); streams are
//    well formed; /metrics counts each request once, shows cancellations, and returns to zero KV,
//    running and queued requests; the server still answers.
// Prints the pass/fail lines of common.mjs and "info" lines with requests/s and the time taken.
import { args, check, fail, info, metrics, prompt, request, answerText, rng, show, streamRequest, waitIdle } from './common.mjs';

const a = args();
const base = a.base;
const total = Number(a.requests ?? 200);
const clients = Number(a.clients ?? 32);
const label = a.label ?? 'load';
const random = rng(Number(a.seed ?? 20261202));

const models = await request(base, '/v1/models', { method: 'GET' });
const context = models.json?.data?.[0]?.ramp?.context_length ?? 128;

// --- the pool -------------------------------------------------------------------------------------
const poolSize = Math.max(12, Math.min(48, Math.round(total / 4)));
const budgets = [1, 2, 4, 8, 12, 16, 24, 32];
const pool = [];
for (let i = 0; i < poolSize; i++) {
  const chat = i % 4 === 3;
  const words = 1 + Math.floor(random() * 30);
  const text = prompt(random, words);
  const body = chat
    ? { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: text }] }
    : { prompt: text };
  body.max_tokens = budgets[Math.floor(random() * budgets.length)];
  if (i % 10 === 7) Object.assign(body, { temperature: 0.8, top_p: 0.9, seed: 1000 + i }); // seeded sample
  else body.temperature = 0;
  if (i % 8 === 5) body.stop = [' the', '.'];
  pool.push({ path: chat ? '/v1/chat/completions' : '/v1/completions', body, sampled: body.temperature > 0 });
}
// Requests that are aborted mid-stream: long enough to be running when the client goes away.
const cancelBody = (i) => ({ prompt: prompt(random, 4 + (i % 5)), max_tokens: Math.min(96, context - 32), temperature: 0 });

// --- 1. sequential answers -------------------------------------------------------------------------
let sequentialOk = true;
const t0 = performance.now();
for (const spec of pool) {
  const r = await request(base, spec.path, { body: spec.body });
  if (r.status !== 200 || typeof answerText(r.json) !== 'string') {
    sequentialOk = false;
    fail(`${label}: sequential answers for the pool`, `${spec.path} ${show(spec.body)} -> ${r.status} ${r.text.slice(0, 300)}`);
    break;
  }
  spec.answer = { text: answerText(r.json), finish: r.json.choices[0].finish_reason, usage: r.json.usage };
}
const sequentialSeconds = (performance.now() - t0) / 1000;
if (!sequentialOk) process.exit(0);
info(`${label}: ${pool.length} sequential answers in ${sequentialSeconds.toFixed(2)} s`);

// --- 2. the concurrent run -------------------------------------------------------------------------
const before = await metrics(base);
const plan = [];
for (let i = 0; i < total; i++) {
  const spec = pool[Math.floor(random() * pool.length)];
  const mode = i % 10 === 4 ? 'cancel' : i % 3 === 0 ? 'stream' : 'whole';
  plan.push({ i, spec, mode });
}
const results = new Array(total);
let next = 0;
async function client() {
  while (next < total) {
    const job = plan[next++];
    const started = performance.now();
    try {
      if (job.mode === 'whole') {
        const r = await request(base, job.spec.path, { body: job.spec.body, timeoutMs: 120000 });
        results[job.i] = { status: r.status, text: answerText(r.json), finish: r.json?.choices?.[0]?.finish_reason, usage: r.json?.usage, body: r.text };
      } else if (job.mode === 'stream') {
        const body = { ...job.spec.body, stream_options: { include_usage: job.i % 2 === 0 } };
        results[job.i] = await streamRequest(base, job.spec.path, body);
      } else {
        results[job.i] = await streamRequest(base, '/v1/completions', cancelBody(job.i), { abortAfter: 2 + (job.i % 3) });
      }
    } catch (error) {
      results[job.i] = { status: 0, error: String(error?.cause ?? error) };
    }
    results[job.i].seconds = (performance.now() - started) / 1000;
  }
}
const t1 = performance.now();
await Promise.all(Array.from({ length: clients }, client));
const seconds = (performance.now() - t1) / 1000;

// --- 3. checks --------------------------------------------------------------------------------------
const statuses = {};
const wrongStatus = [];
for (const job of plan) {
  const r = results[job.i];
  statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  if (r.status !== 200) wrongStatus.push(`#${job.i} ${job.mode} ${job.spec.path}: status ${r.status} ${r.error ?? r.body ?? r.errorBody ?? ''}`.slice(0, 300));
}
const fiveXX = Object.keys(statuses).filter((s) => s >= 500).reduce((n, s) => n + statuses[s], 0);
check(wrongStatus.length === 0,
  `${label}: ${total} requests from ${clients} concurrent clients all answered 200 (no 5xx, no errors)`,
  `statuses ${show(statuses)}${fiveXX ? ` (${fiveXX} 5xx)` : ''}`, ...wrongStatus.slice(0, 5));

function compare(kind) {
  const mismatches = [];
  let n = 0;
  for (const job of plan) {
    const r = results[job.i];
    if (job.mode === 'cancel' || r.status !== 200 || (kind === 'greedy') === job.spec.sampled) continue;
    n++;
    const want = job.spec.answer;
    const problems = [];
    if (r.text !== want.text) problems.push(`text ${show(r.text)} != sequential ${show(want.text)}`);
    if (r.finish !== want.finish) problems.push(`finish_reason ${r.finish} != ${want.finish}`);
    if ((job.mode === 'whole' || (r.usage !== null && r.usage !== undefined)) && show(r.usage) !== show(want.usage))
      problems.push(`usage ${show(r.usage)} != ${show(want.usage)}`);
    if (problems.length) mismatches.push(`#${job.i} ${job.mode} ${job.spec.path} ${show(job.spec.body)}: ${problems.join('; ')}`);
  }
  return { n, mismatches };
}
const greedy = compare('greedy');
check(greedy.mismatches.length === 0 && greedy.n > 0,
  `${label}: every completed greedy answer equals its sequential answer (${greedy.n} compared: text, finish_reason, usage)`,
  `${greedy.mismatches.length} differ`, ...greedy.mismatches.slice(0, 4));
const sampled = compare('sampled');
check(sampled.mismatches.length === 0 && sampled.n > 0,
  `${label}: every seeded sampled answer (temperature 0.8) equals its sequential answer (${sampled.n} compared)`,
  `${sampled.mismatches.length} differ`, ...sampled.mismatches.slice(0, 4));

const streamProblems = [];
let streamed = 0, withUsage = 0;
for (const job of plan) {
  const r = results[job.i];
  if (job.mode !== 'stream' || r.status !== 200) continue;
  streamed++;
  const problems = [...r.problems];
  if (!r.done) problems.push('no data: [DONE]');
  if (!r.finish) problems.push('no finish_reason');
  if (job.i % 2 === 0) {
    if (!r.usage) problems.push('include_usage asked, no usage chunk');
    else withUsage++;
  } else if (r.usage) problems.push(`usage without include_usage: ${show(r.usage)}`);
  if (problems.length) streamProblems.push(`#${job.i}: ${problems.join('; ')}`);
}
check(streamProblems.length === 0 && streamed > 0,
  `${label}: ${streamed} streams well formed (JSON chunks, one finish_reason, data: [DONE]; ${withUsage} with include_usage)`,
  ...streamProblems.slice(0, 5));

const cancelJobs = plan.filter((job) => job.mode === 'cancel');
const aborted = cancelJobs.filter((job) => results[job.i].aborted).length;
const idle = await waitIdle(base, 10);
const after = idle.m;
const ended = (m) => ['stop', 'length', 'exit', 'cancelled', 'error'].reduce((n, f) => n + (m[`ramp_requests_total{finish="${f}"}`] ?? 0), 0);
const cancelled = (after['ramp_requests_total{finish="cancelled"}'] ?? 0) - (before['ramp_requests_total{finish="cancelled"}'] ?? 0);
check(aborted === cancelJobs.length && cancelled >= 1 && cancelled <= aborted,
  `${label}: ${aborted} of ${cancelJobs.length} requests aborted mid-stream by their clients; ramp_requests_total{finish="cancelled"} +${cancelled}`,
  `aborted ${aborted}, cancelled counter +${cancelled} (expected 1..${aborted})`);
const endedDelta = ended(after) - ended(before);
check(endedDelta === total,
  `${label}: ramp_requests_total counts each of the ${total} requests once (+${endedDelta})`,
  `before ${ended(before)}, after ${ended(after)}`);
check(idle.idle,
  `${label}: afterwards ramp_kv_bytes_in_use, ramp_running_requests and ramp_queue_depth return to 0`,
  `kv ${after.ramp_kv_bytes_in_use}, running ${after.ramp_running_requests}, queued ${after.ramp_queue_depth} after 10 s`);
const spec = pool[0];
const last = await request(base, spec.path, { body: spec.body });
check(last.status === 200 && answerText(last.json) === spec.answer.text,
  `${label}: the server still answers afterwards (same answer as before the load)`,
  `status ${last.status}: ${last.text.slice(0, 300)}`);

const tokens = (after.ramp_generated_tokens_total ?? 0) - (before.ramp_generated_tokens_total ?? 0);
const latencies = plan.filter((job) => job.mode !== 'cancel').map((job) => results[job.i].seconds).sort((x, y) => x - y);
const p = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]?.toFixed(2);
info(`${label}: ${total} requests (${plan.filter((j) => j.mode === 'stream').length} streamed, ${cancelJobs.length} cancelled) ` +
  `from ${clients} clients in ${seconds.toFixed(2)} s: ${(total / seconds).toFixed(1)} requests/s, ` +
  `latency p50 ${p(0.5)} s p99 ${p(0.99)} s, ${tokens} tokens generated (${(tokens / seconds).toFixed(0)} tokens/s)`);
