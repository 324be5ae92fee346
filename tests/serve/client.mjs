// client.mjs: the official `openai` npm client against `ramp serve`.
//
//   node client.mjs --base http://127.0.0.1:PORT/v1
//
// completions.create, chat.completions.create, streaming of both with `for await`, models.list,
// and errors: n: 2 must make the client throw an APIError (BadRequestError) with status 400 and
// param "n"; a context overflow a 400 whose message names the numbers. Each answer is compared
// with the same request sent with plain fetch. Prints the pass/fail lines of common.mjs.
import OpenAI from 'openai';
import { args, answerText, check, fail, request, show } from './common.mjs';

const base = args().base;
const client = new OpenAI({ baseURL: base, apiKey: 'sk-ramp-test', maxRetries: 0, timeout: 60000 });
const raw = async (path, body) => (await request(base, path, { body })).json;

async function attempt(description, fn) {
  try {
    await fn();
  } catch (error) {
    fail(description, `threw ${error?.constructor?.name}: ${String(error?.message ?? error).slice(0, 300)}`);
  }
}

let model = 'ramp';
await attempt('openai client: models.list() lists the served model', async () => {
  const list = [];
  for await (const m of client.models.list()) list.push(m);
  model = list[0]?.id ?? model;
  check(list.length === 1 && typeof list[0].id === 'string' && list[0].object === 'model',
    `openai client: models.list() lists the served model (${model})`, show(list));
});

const completion = { model, prompt: 'The movie was a long and', max_tokens: 12, temperature: 0 };
const expected = answerText(await raw('/completions', completion));
await attempt('openai client: completions.create', async () => {
  const r = await client.completions.create(completion);
  const u = r.usage;
  check(r.object === 'text_completion' && r.choices[0].text === expected && r.choices[0].finish_reason === 'length' &&
      u.completion_tokens === 12 && u.total_tokens === u.prompt_tokens + u.completion_tokens,
    'openai client: completions.create (text equals the plain request, finish_reason length, usage consistent)',
    `got ${show(r)}`, `expected text ${show(expected)}`);
});

const chat = {
  model,
  messages: [{ role: 'system', content: 'You are brief.' }, { role: 'user', content: 'Tell me about the park.' }],
  max_tokens: 10,
  temperature: 0,
};
const expectedChat = answerText(await raw('/chat/completions', chat));
await attempt('openai client: chat.completions.create', async () => {
  const r = await client.chat.completions.create(chat);
  const u = r.usage;
  check(r.object === 'chat.completion' && r.choices[0].message.role === 'assistant' &&
      r.choices[0].message.content === expectedChat && u.total_tokens === u.prompt_tokens + u.completion_tokens,
    'openai client: chat.completions.create (assistant message equals the plain request, usage consistent)',
    `got ${show(r)}`, `expected content ${show(expectedChat)}`);
});

await attempt('openai client: chat.completions.create stream with for await', async () => {
  const stream = await client.chat.completions.create({ ...chat, stream: true, stream_options: { include_usage: true } });
  let text = '', chunks = 0, role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    chunks++;
    const choice = chunk.choices[0];
    if (choice?.delta?.role) role = choice.delta.role;
    if (choice?.delta?.content) text += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  check(text === expectedChat && role === 'assistant' && finish === 'length' && chunks >= 10 && usage?.completion_tokens === 10,
    `openai client: chat stream with for await (${chunks} chunks; deltas join to the non-streamed answer; usage at the end)`,
    `text ${show(text)} vs ${show(expectedChat)}, role ${role}, finish ${finish}, usage ${show(usage)}`);
});

await attempt('openai client: completions.create stream with for await', async () => {
  const stream = await client.completions.create({ ...completion, stream: true });
  let text = '', chunks = 0, finish = null;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.text ?? '';
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  check(text === expected && finish === 'length' && chunks >= 12,
    `openai client: completions stream with for await (${chunks} chunks join to the non-streamed text)`,
    `text ${show(text)} vs ${show(expected)}, finish ${finish}`);
});

await attempt('openai client: an n: 2 request throws APIError 400', async () => {
  try {
    await client.completions.create({ ...completion, n: 2 });
    fail('openai client: an n: 2 request throws APIError 400', 'no error thrown');
  } catch (error) {
    check(error instanceof OpenAI.APIError && error instanceof OpenAI.BadRequestError && error.status === 400 &&
        error.param === 'n' && error.type === 'invalid_request_error',
      `openai client: an n: 2 request throws ${error?.constructor?.name} with status 400, param n ("${error?.error?.message ?? error?.message}")`,
      `got ${error?.constructor?.name} status ${error?.status} param ${error?.param} type ${error?.type}: ${error?.message}`);
  }
});

await attempt('openai client: a prompt beyond the context throws a 400 naming the numbers', async () => {
  const context = (await request(base, '/models', { method: 'GET' })).json.data[0].ramp.context_length;
  try {
    await client.chat.completions.create({ ...chat, max_tokens: context });
    fail('openai client: a request beyond the context throws a 400 naming the numbers', 'no error thrown');
  } catch (error) {
    check(error instanceof OpenAI.BadRequestError && error.code === 'context_length_exceeded' &&
        String(error.message).includes(String(context)),
      `openai client: max_tokens = context (${context}) in chat throws BadRequestError, code context_length_exceeded`,
      `got ${error?.constructor?.name} status ${error?.status} code ${error?.code}: ${error?.message}`);
  }
});
