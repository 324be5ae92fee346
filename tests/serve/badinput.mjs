// badinput.mjs: a table of malformed requests, each with the status it must get (plain fetch).
//
//   node badinput.mjs --base http://127.0.0.1:PORT --key KEY --max-body BYTES
//
// The server under test was started with --api-key KEY --max-body BYTES --max-queue 1
// --max-sequences 1 --micro-batches 1. Every row must get its status and an error body of the
// OpenAI shape {"error": {"message", "type", "param", "code"}} (JSON, with param and code where
// the row names them). Then a flood of concurrent long requests must draw at least one 429 with
// a Retry-After header (and no 5xx), and afterwards the server must still be healthy.
import { args, check, errorShapeProblem, fail, metrics, pass, request, show, sleep, waitIdle } from './common.mjs';

const a = args();
const base = a.base;
const key = a.key;
const maxBody = Number(a['max-body']);
const auth = { Authorization: `Bearer ${key}` };
const models = await request(base, '/v1/models', { method: 'GET', headers: auth });
const context = models.json?.data?.[0]?.ramp?.context_length;
const vocab = 512; // lite16 and stories260K: token ids must be below this
if (!context) {
  fail('bad input: /v1/models answers with the context length', `${models.status} ${models.text.slice(0, 200)}`);
  process.exit(0);
}

const C = '/v1/completions', CHAT = '/v1/chat/completions';
const ok = { prompt: 'The movie was', max_tokens: 4, temperature: 0 };
const okChat = { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, temperature: 0 };
const with_ = (base, extra) => ({ ...base, ...extra });
const bytes = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));
const longPrompt = Array.from({ length: 100 }, () => 7); // 100 token ids

// [name, path, {method, body, headers}, status, {param, code, includes: [strings the message names]}]
const table = [
  ['malformed JSON (unterminated object)', C, { body: '{"prompt": "hi", "max_tokens": 4' }, 400],
  ['malformed JSON (trailing garbage)', C, { body: '{"prompt": "hi"} xyz' }, 400],
  ['a JSON array instead of an object', C, { body: '[1, 2, 3]' }, 400],
  ['a bare JSON string', C, { body: '"prompt"' }, 400],
  ['an empty body', C, { body: '' }, 400],
  ['JSON arrays nested 5000 deep', C, { body: '['.repeat(5000) + ']'.repeat(5000) }, 400],
  ['a duplicated key', C, { body: '{"prompt": "a", "prompt": "b"}' }, 400],
  ['invalid UTF-8 bytes in the prompt (\\xff\\xfe)', C, { body: bytes('{"prompt": "abc', [0xff, 0xfe], '", "max_tokens": 2}') }, 400],
  ['an overlong UTF-8 encoding (\\xc0\\xaf)', C, { body: bytes('{"prompt": "a', [0xc0, 0xaf], '"}') }, 400],
  ['a truncated UTF-8 sequence in a chat message', CHAT, { body: bytes('{"messages": [{"role": "user", "content": "x', [0xe2, 0x82], '"}]}') }, 400],
  ['a lone surrogate escape \\ud800', C, { body: '{"prompt": "a\\ud800b"}' }, 400],
  ['a NUL character in the prompt', C, { body: '{"prompt": "a\\u0000b"}' }, 400],
  ['no prompt', C, { body: { max_tokens: 4 } }, 400, { param: 'prompt' }],
  ['an empty prompt', C, { body: with_(ok, { prompt: '' }) }, 400, { param: 'prompt' }],
  ['an empty token array', C, { body: with_(ok, { prompt: [] }) }, 400, { param: 'prompt' }],
  ['prompt is a number', C, { body: with_(ok, { prompt: 42 }) }, 400, { param: 'prompt' }],
  ['a batch of two prompts', C, { body: with_(ok, { prompt: ['a', 'b'] }) }, 400, { param: 'prompt' }],
  [`a token id at the vocabulary size (${vocab})`, C, { body: with_(ok, { prompt: [1, vocab] }) }, 400, { param: 'prompt' }],
  ['a negative token id', C, { body: with_(ok, { prompt: [1, -1] }) }, 400, { param: 'prompt' }],
  ['a token id beyond 32 bits', C, { body: with_(ok, { prompt: [1, 2 ** 40] }) }, 400, { param: 'prompt' }],
  ['a token id that is a float', C, { body: with_(ok, { prompt: [1, 2.5] }) }, 400, { param: 'prompt' }],
  ['max_tokens is a string', C, { body: with_(ok, { max_tokens: 'ten' }) }, 400, { param: 'max_tokens' }],
  ['max_tokens is negative', C, { body: with_(ok, { max_tokens: -1 }) }, 400, { param: 'max_tokens' }],
  ['max_tokens is a float', C, { body: with_(ok, { max_tokens: 1.5 }) }, 400, { param: 'max_tokens' }],
  [`prompt (100 tokens) + max_tokens (100) beyond the context (${context})`, C,
    { body: with_(ok, { prompt: longPrompt, max_tokens: 100 }) }, 400,
    { param: 'max_tokens', code: 'context_length_exceeded', includes: [String(context), '200', '100'] }],
  ['max_tokens 1000000 beyond the context', C, { body: with_(ok, { max_tokens: 1000000 }) }, 400,
    { code: 'context_length_exceeded', includes: [String(context)] }],
  ['temperature above 2', C, { body: with_(ok, { temperature: 2.5 }) }, 400, { param: 'temperature' }],
  ['temperature below 0', C, { body: with_(ok, { temperature: -0.1 }) }, 400, { param: 'temperature' }],
  ['temperature is a string', C, { body: with_(ok, { temperature: 'hot' }) }, 400, { param: 'temperature' }],
  ['top_p 0', C, { body: with_(ok, { top_p: 0 }) }, 400, { param: 'top_p' }],
  ['top_p above 1', C, { body: with_(ok, { top_p: 1.5 }) }, 400, { param: 'top_p' }],
  ['top_k negative', C, { body: with_(ok, { top_k: -3 }) }, 400, { param: 'top_k' }],
  ['seed is a string', C, { body: with_(ok, { seed: 'abc' }) }, 400, { param: 'seed' }],
  ['n: 2', C, { body: with_(ok, { n: 2 }) }, 400, { param: 'n' }],
  ['n: 2 in chat', CHAT, { body: with_(okChat, { n: 2 }) }, 400, { param: 'n' }],
  ['stop is a number', C, { body: with_(ok, { stop: 5 }) }, 400, { param: 'stop' }],
  ['stop holds a number', C, { body: with_(ok, { stop: ['a', 7] }) }, 400, { param: 'stop' }],
  ['stop has 5 strings', C, { body: with_(ok, { stop: ['a', 'b', 'c', 'd', 'e'] }) }, 400, { param: 'stop' }],
  ['stop is an empty string', C, { body: with_(ok, { stop: '' }) }, 400, { param: 'stop' }],
  ['stream is a string', C, { body: with_(ok, { stream: 'yes' }) }, 400, { param: 'stream' }],
  ['stream_options is a string', C, { body: with_(ok, { stream: true, stream_options: 'x' }) }, 400, { param: 'stream_options' }],
  ['logprobs 6 (completions allow 0..5)', C, { body: with_(ok, { logprobs: 6 }) }, 400, { param: 'logprobs' }],
  ['chat logprobs is a number', CHAT, { body: with_(okChat, { logprobs: 1 }) }, 400, { param: 'logprobs' }],
  ['chat top_logprobs without logprobs', CHAT, { body: with_(okChat, { top_logprobs: 2 }) }, 400, { param: 'top_logprobs' }],
  ['echo: true', C, { body: with_(ok, { echo: true }) }, 400, { param: 'echo' }],
  ['user is a number', C, { body: with_(ok, { user: 5 }) }, 400, { param: 'user' }],
  ['model is an object', C, { body: with_(ok, { model: {} }) }, 400, { param: 'model' }],
  ['an ignored field with a wrong type (logit_bias: 3)', C, { body: with_(ok, { logit_bias: 3 }) }, 400, { param: 'logit_bias' }],
  ['ramp.exit unknown', C, { body: with_(ok, { ramp: { exit: 'bogus' } }) }, 400, { param: 'ramp.exit' }],
  ['ramp.exit svm when none is loaded', C, { body: with_(ok, { ramp: { exit: 'svm' } }) }, 400, { param: 'ramp.exit' }],
  ['chat without messages', CHAT, { body: { max_tokens: 4 } }, 400, { param: 'messages' }],
  ['chat messages empty', CHAT, { body: with_(okChat, { messages: [] }) }, 400, { param: 'messages' }],
  ['chat messages is a string', CHAT, { body: with_(okChat, { messages: 'hello' }) }, 400, { param: 'messages' }],
  ['chat message with an unknown role', CHAT, { body: with_(okChat, { messages: [{ role: 'wizard', content: 'hi' }] }) }, 400,
    { param: 'messages', includes: ['wizard'] }],
  ['chat message without a role', CHAT, { body: with_(okChat, { messages: [{ content: 'hi' }] }) }, 400, { param: 'messages' }],
  ['chat message without content', CHAT, { body: with_(okChat, { messages: [{ role: 'user' }] }) }, 400, { param: 'messages' }],
  ['chat content is a number', CHAT, { body: with_(okChat, { messages: [{ role: 'user', content: 3 }] }) }, 400, { param: 'messages' }],
  ['chat content part is an image', CHAT,
    { body: with_(okChat, { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }) }, 400,
    { param: 'messages' }],
  ['a prompt sent to the chat route', CHAT, { body: ok }, 400, { param: 'messages' }],
  [`a body of ${maxBody + 1000} bytes (over --max-body ${maxBody})`, C,
    { body: with_(ok, { prompt: 'x'.repeat(maxBody + 1000) }) }, 413, { includes: [String(maxBody)] }],
  ['a chunked body over --max-body (no Content-Length)', C,
    { body: 'chunked', chunked: JSON.stringify(with_(ok, { prompt: 'y'.repeat(maxBody * 2) })) }, 413],
  ['no Authorization header', C, { body: ok, headers: {} }, 401],
  ['a wrong API key', C, { body: ok, headers: { Authorization: 'Bearer sk-wrong' } }, 401],
  ['the API key without its last character', C, { body: ok, headers: { Authorization: `Bearer ${key.slice(0, -1)}` } }, 401],
  ['the API key with one more character', C, { body: ok, headers: { Authorization: `Bearer ${key}x` } }, 401],
  ['the API key in another scheme (Basic)', C, { body: ok, headers: { Authorization: `Basic ${key}` } }, 401],
  ['/v1/models without the API key', '/v1/models', { method: 'GET', headers: {} }, 401],
  ['an unknown route (GET /v1/nothing)', '/v1/nothing', { method: 'GET' }, 404],
  ['an unknown route (POST /v1/embeddings)', '/v1/embeddings', { body: { input: 'x' } }, 404],
  ['GET on /v1/completions', C, { method: 'GET' }, 405],
  ['GET on /v1/chat/completions', CHAT, { method: 'GET' }, 405],
  ['DELETE on /v1/completions', C, { method: 'DELETE' }, 405],
  ['POST on /health', '/health', { body: {} }, 405],
];

async function send(path, row) {
  const headers = 'headers' in row ? row.headers : auth;
  if (row.chunked) { // a body streamed without Content-Length
    const payload = Buffer.from(row.chunked);
    const stream = new ReadableStream({
      start(controller) {
        for (let at = 0; at < payload.length; at += 4096) controller.enqueue(payload.subarray(at, at + 4096));
        controller.close();
      },
    });
    const response = await fetch(base + path, {
      method: 'POST', headers: { ...headers, 'Content-Type': 'application/json' }, body: stream, duplex: 'half',
      signal: AbortSignal.timeout(30000),
    });
    const text = await response.text();
    let json = null;
    try { json = JSON.parse(text); } catch {}
    return { status: response.status, headers: response.headers, text, json };
  }
  return request(base, path, { method: row.method ?? 'POST', body: row.body, headers, timeoutMs: 30000 });
}

let rows = 0;
const received = {}; // status -> responses the table and the flood got
const tally = (status) => (received[status] = (received[status] ?? 0) + 1);
for (const [name, path, row, status, expect = {}] of table) {
  rows++;
  const description = `bad input: ${name} -> ${status}`;
  let r;
  try {
    r = await send(path, row);
  } catch (error) {
    fail(description, `request failed: ${String(error?.cause ?? error)}`);
    continue;
  }
  tally(r.status);
  const problems = [];
  if (r.status !== status) problems.push(`status ${r.status}`);
  const shape = r.json === null ? `the body is not JSON: ${r.text.slice(0, 200)}` : errorShapeProblem(r.json);
  if (shape) problems.push(shape);
  if (!(r.headers.get('content-type') || '').startsWith('application/json')) problems.push(`content-type ${r.headers.get('content-type')}`);
  const e = r.json?.error ?? {};
  if ('param' in expect && e.param !== expect.param) problems.push(`param ${show(e.param)}, expected ${show(expect.param)}`);
  if ('code' in expect && e.code !== expect.code) problems.push(`code ${show(e.code)}, expected ${show(expect.code)}`);
  for (const needle of expect.includes ?? [])
    if (!String(e.message).includes(needle)) problems.push(`the message does not name ${needle}`);
  check(problems.length === 0, description + (r.status === status && e.message ? `: "${e.message.slice(0, 110)}"` : ''),
    ...problems, `body: ${r.text.slice(0, 300)}`);
}

// --- 429: one running, one queued, the rest refused -------------------------------------------------
const flood = 8;
const long = { prompt: 'The film was', max_tokens: Math.min(100, context - 16), temperature: 0 };
const answers = await Promise.all(Array.from({ length: flood }, () =>
  request(base, C, { body: long, headers: auth, timeoutMs: 120000 }).catch((error) => ({ status: 0, error: String(error), headers: new Headers(), text: '' }))));
const statuses = answers.map((r) => r.status);
answers.forEach((r) => tally(r.status));
const refused = answers.filter((r) => r.status === 429);
const withRetry = refused.filter((r) => /^\d+$/.test(r.headers.get('retry-after') ?? ''));
const badShapes = refused.map((r) => errorShapeProblem(r.json)).filter(Boolean);
rows++;
check(refused.length >= 1 && withRetry.length === refused.length && badShapes.length === 0 &&
    answers.every((r) => r.status === 200 || r.status === 429) && answers.some((r) => r.status === 200),
  `bad input: ${flood} concurrent long requests with --max-queue 1 --max-sequences 1: ${refused.length} get 429 with Retry-After: ` +
    `${withRetry[0]?.headers.get('retry-after')}, the others 200 (type ${refused[0]?.json?.error?.type})`,
  `statuses ${statuses.join(' ')}`, ...badShapes.slice(0, 2), ...answers.filter((r) => r.error).map((r) => r.error).slice(0, 2));

// --- afterwards ------------------------------------------------------------------------------------
const idle = await waitIdle(base, 10);
const health = await request(base, '/health', { method: 'GET' });
const after = await request(base, C, { body: ok, headers: auth });
check(idle.idle && health.status === 200 && after.status === 200 && typeof after.json?.choices?.[0]?.text === 'string',
  `bad input: after ${rows} bad requests the server is healthy (/health 200, KV 0, a completion answers 200)`,
  `idle ${idle.idle}, /health ${health.status}, completion ${after.status} ${after.text.slice(0, 200)}`);
// Only this script talks to the server: each error status /metrics counts is one this script saw.
const m = await metrics(base);
const counted = (code) => m[`ramp_http_responses_total{code="${code}"}`] ?? 0;
const codes = [400, 401, 404, 405, 413, 429];
check(codes.every((code) => counted(code) === (received[code] ?? 0)),
  `bad input: ramp_http_responses_total counts every error response by status (${codes.map((code) => `${code}: ${counted(code)}`).join(', ')})`,
  `the client saw ${show(received)}`, show(Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('ramp_http_responses_total')))));
