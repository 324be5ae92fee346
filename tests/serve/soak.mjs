// soak.mjs: a time-bounded random mix of good and bad requests against a live `ramp serve`, all at
// once: what a busy public endpoint sees.
//
//   node soak.mjs --base http://127.0.0.1:PORT --seconds 15 --clients 8 --label "1 process" [--max-body 1048576] [--seed N]
//
// Each client loops for --seconds, drawing one of:
//   - a good request (completions or chat, 0-30 words, max_tokens 1-16, half of them streamed),
//     sometimes with fields mutated into wrong types or out-of-range values (a 400 or a 200, as the
//     API allows), unknown roles, bodies cut short, not JSON at all, or larger than --max-body;
//   - a client that goes away: a raw TCP connection that sends part of its body and closes, or sends
//     it whole and closes after the first bytes of the answer (the request is then cancelled).
// Checks: no 5xx and no other status than 200/400/413/429; every 4xx has the OpenAI error shape;
// every 200 is a well-formed answer (JSON with choices, or a well-formed event stream ending in
// [DONE]); no request takes longer than a minute; afterwards the server is idle (KV, running and
// queued requests back to 0), still answers, and gives the same greedy answer as before the soak.
import net from 'node:net';
import { args, check, errorShapeProblem, info, prompt, request, answerText, rng, show, streamRequest, waitIdle } from './common.mjs';

const a = args();
const base = a.base;
const seconds = Number(a.seconds ?? 15);
const clients = Number(a.clients ?? 8);
const maxBody = Number(a['max-body'] ?? 1048576);
const seed = Number(a.seed ?? 20261206);
const label = `soak, ${a.label ?? base}`;
const { hostname, port } = new URL(base);

const probe = { prompt: 'The little dog', max_tokens: 12, temperature: 0 };
const before = await request(base, '/v1/completions', { body: probe });

// --- what a client sends ---------------------------------------------------------------------------
const pick = (random, list) => list[Math.floor(random() * list.length)];
// Values that break a field's type or range, and some that are valid edge cases.
const ODD = {
  max_tokens: [0, 1, -1, 1e9, '3', null, 2.5],
  temperature: [0, 2, 2.5, -1, 'hot', null],
  top_p: [0, 0.5, 1, 1.5, []],
  top_k: [0, 1, -3, 1e6],
  seed: [0, -5, 2 ** 70, 'x'],
  stop: ['\n', ['a', 'b'], [], 3, Array(9).fill('x'), [''], [null]],
  logprobs: [true, false, 3, 30, -1],
  top_logprobs: [0, 2, 20, 21, -1],
  n: [1, 2, 0],
  echo: [true, false, 'yes'],
  stream: [true, false, 'yes', 1],
  stream_options: [{ include_usage: true }, { include_usage: 'no' }, 5],
  ramp: [{ exit: 'none' }, { exit: 'svm' }, { exit: 7 }, 'x'],
};
const TEXTS = ['', ' ', 'é中😀', '\u0000', '<s>', '</s>', '[INST]', '\ud800', 'a'.repeat(600)];
function goodBody(random) {
  const chat = random() < 0.4;
  const text = random() < 0.8 ? prompt(random, Math.floor(random() * 30)) : pick(random, TEXTS);
  const body = chat
    ? { messages: [{ role: 'user', content: text }] }
    : { prompt: random() < 0.9 ? text : pick(random, [[text], [1, 2, 3], [], [[1, 2]], 5, null]) };
  body.max_tokens = 1 + Math.floor(random() * 16);
  if (random() < 0.5) body.temperature = 0;
  if (random() < 0.5) body.stream = true;
  return { path: chat ? '/v1/chat/completions' : '/v1/completions', body };
}
function draw(random) {
  const { path, body } = goodBody(random);
  const kind = random();
  if (kind < 0.35) return { path, body, what: 'good' };
  if (kind < 0.75) {
    for (let i = 0; i < 1 + Math.floor(random() * 3); i++) {
      const field = pick(random, Object.keys(ODD));
      body[field] = pick(random, ODD[field]);
    }
    if (body.messages && random() < 0.3)
      body.messages.push({ role: pick(random, ['system', 'assistant', 'tool', 'bogus', '', 7]), content: pick(random, TEXTS) });
    return { path, body, what: 'odd fields' };
  }
  const text = JSON.stringify(body);
  if (kind < 0.85) return { path, raw: text.slice(0, Math.floor(random() * text.length)), what: 'cut short' };
  if (kind < 0.9) return { path, raw: pick(random, ['x', '[]', 'null', '{"prompt":', '\u0000', '{}']), what: 'not a request' };
  if (kind < 0.93) return { path, raw: '{"prompt":"' + 'a'.repeat(maxBody + 1) + '"}', what: 'too large' };
  return { path, raw: text, drop: random() < 0.5 ? 'mid-body' : 'mid-answer', what: 'client gone' };
}

// A raw connection that goes away: before its body is whole, or after the first bytes of the answer.
function dropConnection(path, text, how) {
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.setTimeout(30000, done);
    socket.on('error', done);
    socket.on('connect', () => {
      const body = Buffer.from(text);
      socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
      if (how === 'mid-body') {
        socket.write(body.subarray(0, Math.floor(body.length / 2)), done);
      } else {
        socket.write(body);
        socket.once('data', done);
      }
    });
  });
}

// --- the soak ----------------------------------------------------------------------------------------
const counts = {};
const problems = []; /* the first eight, and how many there were */
let problemCount = 0;
let slowest = 0;
const count = (key) => (counts[key] = (counts[key] ?? 0) + 1);
const problem = (text) => ++problemCount <= 8 && problems.push(text);

async function one(random) {
  const r = draw(random);
  const started = Date.now();
  try {
    if (r.drop) {
      await dropConnection(r.path, r.raw, r.drop);
      count(`dropped ${r.drop}`);
      return;
    }
    if (r.body?.stream === true) {
      const s = await streamRequest(base, r.path, r.body, { timeoutMs: 60000 });
      count(`${s.status}`);
      if (s.status === 200 && (s.problems.length || !s.done || !s.finish))
        problem(`a malformed stream for ${show(r.body)}: ${s.problems.join('; ') || (s.done ? 'no finish_reason' : 'no [DONE]')}`);
      if (s.status !== 200) judgeError(s.status, s.errorBody, r);
    } else {
      const response = await request(base, r.path, { body: r.raw ?? r.body, timeoutMs: 60000 });
      count(`${response.status}`);
      if (response.status === 200) {
        if (!Array.isArray(response.json?.choices) || response.json.choices.length === 0 || typeof answerText(response.json) !== 'string')
          problem(`a 200 that is not an answer for ${show(r.body ?? r.raw)}: ${show(response.text)}`);
      } else judgeError(response.status, response.text, r);
    }
  } catch (error) {
    count('client error');
    problem(`${r.what} ${show(r.body ?? r.raw?.slice(0, 120))}: ${error.message}`);
  }
  slowest = Math.max(slowest, Date.now() - started);
}
function judgeError(status, text, r) {
  if (![400, 413, 429].includes(status)) return problem(`status ${status} for ${r.what} ${show(r.body ?? r.raw?.slice(0, 120))}: ${show(text)}`);
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  const shape = errorShapeProblem(json);
  if (shape) problem(`a ${status} without the error shape for ${show(r.body ?? r.raw?.slice(0, 120))}: ${shape}`);
}

const until = Date.now() + seconds * 1000;
await Promise.all(
  Array.from({ length: clients }, async (_, c) => {
    const random = rng(seed + 7919 * c);
    while (Date.now() < until) await one(random);
  }),
);
const total = Object.values(counts).reduce((x, y) => x + y, 0);
info(`${label}: ${total} requests in ${seconds} s from ${clients} clients: ${show(counts)}; slowest ${slowest} ms`);

check(problemCount === 0, `${label}: mixed good, bad and abandoned requests: no 5xx, every answer well formed, every error in the OpenAI shape`,
  `${problemCount} problems, the first ${problems.length}:`, ...problems);
check(slowest < 60000, `${label}: every request answered within a minute`, `slowest ${slowest} ms`);
check((counts['200'] ?? 0) > 0 && (counts['400'] ?? 0) > 0 && (counts['dropped mid-answer'] ?? 0) > 0,
  `${label}: the mix held answers, refusals and abandoned requests`, show(counts));
const idle = await waitIdle(base, 30);
check(idle.idle, `${label}: afterwards KV in use, running and queued requests are back to 0`,
  `kv ${idle.m.ramp_kv_bytes_in_use}, running ${idle.m.ramp_running_requests}, queued ${idle.m.ramp_queue_depth}`);
const after = await request(base, '/v1/completions', { body: probe });
check(before.status === 200 && after.status === 200 && answerText(after.json) === answerText(before.json),
  `${label}: afterwards the server gives the same greedy answer as before`, `before ${show(before.json)}`, `after ${show(after.json)}`);
