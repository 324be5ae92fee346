// common.mjs: what the `ramp serve` client checks share (plain fetch, no packages).
//
// Every check prints one line on stdout that tests/e2e/serve.sh turns into its pass/fail lines:
//   "pass<TAB>description"
//   "fail<TAB>description<TAB>detail<TAB>detail..."
//   "skip<TAB>description<TAB>reason"
//   "info<TAB>text"                       (a figure for the log; not a check)
// A script that dies without reporting is a failure of the section (serve.sh counts it).

export function report(kind, description, ...details) {
  const clean = (s) => String(s).replace(/[\t\n\r]+/g, ' ').slice(0, 600);
  console.log([kind, clean(description), ...details.map(clean)].join('\t'));
}
export const pass = (description) => report('pass', description);
export const fail = (description, ...details) => report('fail', description, ...details);
export const skip = (description, reason) => report('skip', description, reason);
export const info = (text) => report('info', text);
// check(condition, description, ...details): pass or fail; returns the condition.
export function check(condition, description, ...details) {
  if (condition) pass(description);
  else fail(description, ...details);
  return !!condition;
}

// Arguments as --name value pairs.
export function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const show = (value) => JSON.stringify(value)?.slice(0, 300);

// One request: {status, headers, text, json} (json null when the body is not JSON). body may be
// an object (sent as JSON), a string or a Buffer (sent as they are).
export async function request(base, path, { method = 'POST', body, headers = {}, signal, timeoutMs = 60000 } = {}) {
  const init = { method, headers: { ...headers }, signal: signal ?? AbortSignal.timeout(timeoutMs) };
  if (body !== undefined) {
    init.body = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    if (!Object.keys(init.headers).some((h) => h.toLowerCase() === 'content-type'))
      init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(base + path, init);
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, headers: response.headers, text, json };
}

// The answer text of a completion or chat completion response.
export function answerText(json) {
  const choice = json?.choices?.[0];
  return choice?.message ? choice.message.content : choice?.text;
}

// A streamed request. Reads the Server-Sent Events; with abortAfter, aborts the fetch after that
// many data chunks. Returns {status, chunks (parsed JSON), text (concatenated deltas), finish,
// usage, done ([DONE] seen), aborted, problems (format errors)}.
export async function streamRequest(base, path, body, { abortAfter = 0, headers = {}, timeoutMs = 120000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no end of stream after ${timeoutMs} ms`)), timeoutMs);
  const result = { status: 0, chunks: [], text: '', finish: null, usage: null, done: false, aborted: false, problems: [] };
  try {
    const response = await fetch(base + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({ ...body, stream: true }),
      signal: controller.signal,
    });
    result.status = response.status;
    if (response.status !== 200) {
      result.errorBody = await response.text();
      return result;
    }
    const type = response.headers.get('content-type') || '';
    if (!type.startsWith('text/event-stream')) result.problems.push(`content-type ${type}`);
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!event.startsWith('data: ')) {
          result.problems.push(`an event that is not "data: ...": ${show(event)}`);
          continue;
        }
        const data = event.slice(6);
        if (result.done) result.problems.push(`data after [DONE]: ${show(data)}`);
        if (data === '[DONE]') {
          result.done = true;
          continue;
        }
        let chunk;
        try {
          chunk = JSON.parse(data);
        } catch {
          result.problems.push(`a chunk that is not JSON: ${show(data)}`);
          continue;
        }
        if (chunk.error) result.problems.push(`an error event: ${show(chunk)}`);
        result.chunks.push(chunk);
        const choice = chunk.choices?.[0];
        if (choice) {
          const piece = choice.delta ? choice.delta.content : choice.text;
          if (typeof piece === 'string') result.text += piece;
          if (choice.finish_reason) {
            if (result.finish) result.problems.push('two chunks carry a finish_reason');
            result.finish = choice.finish_reason;
          }
        }
        if (chunk.usage) result.usage = chunk.usage;
        if (abortAfter && result.chunks.length >= abortAfter && !result.done) {
          result.aborted = true;
          controller.abort();
          return result;
        }
      }
    }
    if (buffered.trim() !== '') result.problems.push(`trailing bytes: ${show(buffered)}`);
    return result;
  } catch (error) {
    if (result.aborted) return result;
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

// /metrics as {"name{labels}": number}.
export async function metrics(base) {
  const response = await fetch(base + '/metrics', { signal: AbortSignal.timeout(10000) });
  const out = {};
  for (const line of (await response.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

// Polls /metrics until kv in use, running requests and queue depth are all 0 (or the time is up).
export async function waitIdle(base, seconds = 10) {
  const until = Date.now() + seconds * 1000;
  let m;
  for (;;) {
    m = await metrics(base);
    if (m.ramp_kv_bytes_in_use === 0 && m.ramp_running_requests === 0 && m.ramp_queue_depth === 0) return { idle: true, m };
    if (Date.now() > until) return { idle: false, m };
    await sleep(200);
  }
}

// The OpenAI error shape: {"error": {"message", "type", "param", "code"}}; returns what is wrong, or ''.
export function errorShapeProblem(json) {
  const e = json?.error;
  if (!e || typeof e !== 'object') return `no "error" object: ${show(json)}`;
  if (typeof e.message !== 'string' || e.message === '') return `error.message is not a non-empty string: ${show(e)}`;
  if (typeof e.type !== 'string' || e.type === '') return `error.type is not a non-empty string: ${show(e)}`;
  for (const key of ['param', 'code'])
    if (!(key in e) || (e[key] !== null && typeof e[key] !== 'string')) return `error.${key} is missing or not a string/null: ${show(e)}`;
  return '';
}

// Deterministic pseudo-random numbers (a run is the same every time).
export function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const WORDS = ('the a movie film story girl boy dog park was is very good bad funny sad long short day night ' +
  'and but with of to in on big little happy played ran saw wanted friend mom said tree ball sun').split(' ');
// A prompt of about `words` words.
export function prompt(random, words) {
  const out = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(random() * WORDS.length)]);
  const text = out.join(' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}
