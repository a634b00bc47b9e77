// The official `openai` npm client against a running `siesta serve` (tiny preset), as a user's
// application would call it. serve_e2e_test starts the server and runs:
//   node openai_client.mjs http://127.0.0.1:PORT [--dev]
// --dev: the server has SIESTA_SERVER_DEV_MODE=1 and --enable-sleep-mode (503 while asleep).
// Prints one line per check; exits 1 at the first failed one.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const [base, ...flags] = process.argv.slice(2);
if (!base) {
  console.error('usage: node openai_client.mjs BASE_URL [--dev]');
  process.exit(2);
}
const dev = flags.includes('--dev');
// maxRetries 0: the client retries 5xx by default, which would hide the 503 of a sleeping server.
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });

let passed = 0;
async function check(name, fn) {
  try {
    await fn();
    ++passed;
    console.log(`ok: ${name}`);
  } catch (e) {
    console.error(`FAILED: ${name}: ${e.stack ?? e}`);
    process.exit(1);
  }
}

async function expectError(promise, cls, status, needle) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e.constructor.name}: ${e.message}`);
    assert.equal(e.status, status);
    assert.ok(e.message.includes(needle), `message '${e.message}' lacks '${needle}'`);
    return e;
  }
  assert.fail(`expected ${cls.name} (${status})`);
}

const greedy = { model: 'tiny', prompt: 'Hello, world', max_tokens: 8, temperature: 0, ignore_eos: true };
let greedyText = '';

await check('models.list', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].id, 'tiny');
  assert.equal(models[0].object, 'model');
});

await check('completions.create (greedy)', async () => {
  const r = await client.completions.create(greedy);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.prompt_tokens, 12);
  assert.equal(r.usage.completion_tokens, 8);
  greedyText = r.choices[0].text;
  const again = await client.completions.create(greedy);
  assert.equal(again.choices[0].text, greedyText);
});

await check('completions.create (stream)', async () => {
  const stream = await client.completions.create({
    ...greedy, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, greedyText);
  assert.equal(finish, 'length');
  assert.equal(usage?.completion_tokens, 8);
});

await check('n, seed, top_p, top_k, logprobs, stop', async () => {
  const body = { model: 'tiny', prompt: ['one', 'two'], n: 2, seed: 11, temperature: 0.8, top_p: 0.95,
                 top_k: 40, max_tokens: 5, ignore_eos: true, logprobs: 1 };
  const a = await client.completions.create(body);
  const b = await client.completions.create(body);
  assert.deepEqual(a.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  for (const c of a.choices) {
    assert.equal(c.logprobs.tokens.length, 5);
    assert.ok(c.logprobs.token_logprobs.every((x) => x <= 0));
  }
  const stopped = await client.completions.create({ ...greedy, stop: ['\u0000never'] });
  assert.equal(stopped.choices[0].text, greedyText);
});

await check('400 names the field (BadRequestError)', async () => {
  await expectError(client.completions.create({ ...greedy, temperature: -1 }), OpenAI.BadRequestError,
                    400, "'temperature'");
  await expectError(client.completions.create({ ...greedy, max_token: 3 }), OpenAI.BadRequestError,
                    400, "unknown field 'max_token'");
  await expectError(client.completions.create({ ...greedy, n: 5000 }), OpenAI.BadRequestError, 400,
                    "'n' must be in [1, 1024]");
});

await check('unknown model (NotFoundError)', async () => {
  await expectError(client.completions.create({ ...greedy, model: 'gpt-9' }), OpenAI.NotFoundError, 404,
                    'gpt-9');
});

if (dev) {
  const post = async (path) => {
    const r = await fetch(`${base}${path}`, { method: 'POST' });
    assert.equal(r.status, 200, `${path}: ${await r.text()}`);
  };
  const isSleeping = async () => (await (await fetch(`${base}/is_sleeping`)).json()).is_sleeping;

  await check('503 while asleep, same output after wake_up', async () => {
    await post('/sleep?level=1');
    assert.equal(await isSleeping(), true);
    const e = await expectError(client.completions.create(greedy), OpenAI.APIError, 503, 'sleeping');
    assert.equal(e.type, 'ServiceUnavailableError');
    await post('/wake_up');
    assert.equal(await isSleeping(), false);
    const r = await client.completions.create(greedy);
    assert.equal(r.choices[0].text, greedyText);
  });
}

console.log(`openai client: all ${passed} checks passed`);
