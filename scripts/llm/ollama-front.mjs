#!/usr/bin/env node
// An Ollama-compatible (and OpenAI-compatible) HTTP front for a local GGUF model, on node-llama-cpp's
// prebuilt CPU binaries. Test support and demo only: it lets medic's real L1 providers (ollama-rs on
// /api/chat, the OpenAI-compatible provider on /v1/chat/completions) talk to a real model on a machine
// without Ollama. It binds 127.0.0.1 only and serves one request at a time (one context sequence).
//
//   node scripts/llm/ollama-front.mjs --model FILE.gguf --runtime DIR [--port 0] [--threads 1]
//        [--ctx 4096] [--name qwen2.5-coder:0.5b]
//
// DIR holds node_modules/node-llama-cpp (scripts/test-model.sh prepares it). Once the model is loaded
// it prints one line `listening http://127.0.0.1:PORT` on stdout. Routes, in the real wire formats:
//   GET  /  /api/version  /api/tags
//   POST /api/chat              Ollama: messages, format ("json" or a JSON schema), options.temperature,
//                               options.num_predict, options.seed; stream is answered as one final chunk
//   POST /v1/chat/completions   OpenAI: messages, response_format (json_schema | json_object),
//                               temperature, max_tokens / max_completion_tokens
//   POST /tokenize              llama.cpp server: {"content": "..."} → {"tokens": [...]}

import http from "node:http";
import path from "node:path";
import { pathToFileURL } from "node:url";

function args(argv) {
  const out = { port: 0, threads: 1, ctx: 4096, name: "qwen2.5-coder:0.5b" };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in out) && !["model", "runtime"].includes(key)) throw new Error(`unknown option ${argv[i]}`);
    out[key] = ["port", "threads", "ctx"].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!out.model || !out.runtime) throw new Error("--model and --runtime are required");
  return out;
}

const opts = args(process.argv.slice(2));
// MEDIC_FRONT_LOG=FILE appends every request and reply as one JSON line (debugging prompts).
const requestLog = process.env.MEDIC_FRONT_LOG;
const fs = requestLog ? await import("node:fs") : undefined;
const lib = await import(
  pathToFileURL(path.resolve(opts.runtime, "node_modules/node-llama-cpp/dist/index.js")).href
);
const llama = await lib.getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath: opts.model });
const context = await model.createContext({ contextSize: opts.ctx, threads: opts.threads });
const sequence = context.getSequence();

// JSON schema → node-llama-cpp's grammar schema: type lists become oneOf, keywords it does not know
// (minimum, maximum, additionalProperties, …) are dropped. Properties are all required, in order.
function toGrammarSchema(schema) {
  if (Array.isArray(schema.type)) {
    const { type, ...rest } = schema;
    return { oneOf: type.map((t) => toGrammarSchema({ ...rest, type: t })) };
  }
  const out = {};
  if (schema.description) out.description = schema.description;
  if (schema.enum) return { ...out, enum: schema.enum };
  if (schema.const !== undefined) return { ...out, const: schema.const };
  for (const key of ["oneOf", "anyOf"]) if (schema[key]) return { ...out, oneOf: schema[key].map(toGrammarSchema) };
  if (schema.type === "object") {
    out.type = "object";
    out.properties = {};
    for (const [k, v] of Object.entries(schema.properties ?? {})) out.properties[k] = toGrammarSchema(v);
    return out;
  }
  if (schema.type === "array") return { ...out, type: "array", items: toGrammarSchema(schema.items ?? {}) };
  if (schema.type) out.type = schema.type;
  if (schema.type === "string") {
    for (const key of ["minLength", "maxLength"]) if (schema[key] !== undefined) out[key] = schema[key];
  }
  return out;
}

async function grammarFor(format) {
  if (!format) return undefined;
  if (format === "json") return llama.getGrammarFor("json");
  if (typeof format === "object") return llama.createGrammarForJsonSchema(toGrammarSchema(format));
  throw new Error(`format must be "json" or a JSON schema`);
}

let queue = Promise.resolve();

// One generation at a time on the single sequence; each starts from an empty history so token counts
// and answers do not depend on earlier requests.
// Sampling as Ollama's defaults have it (repeat_penalty 1.1 over the last 64 tokens): without it small
// models loop on whitespace inside a JSON string until the token limit.
function generate({ messages, format, temperature, maxTokens, seed, repeatPenalty = 1.1, repeatLastN = 64 }) {
  const run = async () => {
    const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
    const turns = messages.filter((m) => m.role !== "system");
    if (turns.length === 0 || turns[turns.length - 1].role !== "user") throw new Error("the last message must be from the user");
    await sequence.clearHistory();
    const session = new lib.LlamaChatSession({ contextSequence: sequence, systemPrompt: system || undefined, autoDisposeSequence: false });
    const history = session.getChatHistory();
    for (const m of turns.slice(0, -1)) {
      history.push(m.role === "assistant" ? { type: "model", response: [m.content] } : { type: "user", text: m.content });
    }
    session.setChatHistory(history);
    const grammar = await grammarFor(format);
    const before = sequence.tokenMeter.getState();
    const started = process.hrtime.bigint();
    const text = await session.prompt(turns[turns.length - 1].content, {
      grammar,
      temperature: temperature ?? 0,
      maxTokens: maxTokens && maxTokens > 0 ? maxTokens : undefined,
      seed,
      repeatPenalty: repeatPenalty > 1 ? { penalty: repeatPenalty, lastTokens: repeatLastN } : false,
    });
    const elapsed = process.hrtime.bigint() - started;
    if (requestLog) fs.appendFileSync(requestLog, JSON.stringify({ messages, format, reply: text }) + "\n");
    const after = sequence.tokenMeter.getState();
    session.dispose({ disposeSequence: false });
    return {
      text,
      promptTokens: after.usedInputTokens - before.usedInputTokens,
      outputTokens: after.usedOutputTokens - before.usedOutputTokens,
      nanos: Number(elapsed),
    };
  };
  const result = queue.then(run, run);
  queue = result.catch(() => {});
  return result;
}

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (e) {
    throw Object.assign(new Error(`body is not JSON: ${e.message}`), { status: 400 });
  }
}

async function ollamaChat(body, res) {
  if (!Array.isArray(body.messages)) return send(res, 400, { error: "messages is required" });
  const o = body.options ?? {};
  const r = await generate({ messages: body.messages, format: body.format, temperature: o.temperature, maxTokens: o.num_predict, seed: o.seed, repeatPenalty: o.repeat_penalty, repeatLastN: o.repeat_last_n });
  const reply = {
    model: body.model ?? opts.name,
    created_at: new Date().toISOString(),
    message: { role: "assistant", content: r.text },
    done_reason: "stop",
    done: true,
    total_duration: r.nanos,
    load_duration: 0,
    prompt_eval_count: r.promptTokens,
    prompt_eval_duration: 0,
    eval_count: r.outputTokens,
    eval_duration: r.nanos,
  };
  if (body.stream === false) return send(res, 200, reply);
  res.writeHead(200, { "content-type": "application/x-ndjson" });
  res.end(JSON.stringify(reply) + "\n");
}

async function openaiChat(body, res) {
  if (!Array.isArray(body.messages)) return send(res, 400, { error: { message: "messages is required", type: "invalid_request_error" } });
  const rf = body.response_format;
  const format = rf?.type === "json_schema" ? rf.json_schema?.schema : rf?.type === "json_object" ? "json" : undefined;
  const r = await generate({ messages: body.messages, format, temperature: body.temperature, maxTokens: body.max_completion_tokens ?? body.max_tokens, seed: body.seed });
  send(res, 200, {
    id: `chatcmpl-${Date.now()}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: body.model ?? opts.name,
    choices: [{ index: 0, message: { role: "assistant", content: r.text }, finish_reason: "stop" }],
    usage: { prompt_tokens: r.promptTokens, completion_tokens: r.outputTokens, total_tokens: r.promptTokens + r.outputTokens },
  });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "GET" && url.pathname === "/") return res.end("Ollama is running");
    if (req.method === "GET" && url.pathname === "/api/version") return send(res, 200, { version: "0.0.0-medic-front" });
    if (req.method === "GET" && url.pathname === "/api/tags") return send(res, 200, { models: [{ name: opts.name, model: opts.name }] });
    if (req.method !== "POST") return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    const body = await readJson(req);
    if (url.pathname === "/api/chat") return await ollamaChat(body, res);
    if (url.pathname === "/v1/chat/completions") return await openaiChat(body, res);
    if (url.pathname === "/tokenize") return send(res, 200, { tokens: Array.from(model.tokenize(String(body.content ?? ""))) });
    return send(res, 404, { error: `no route POST ${url.pathname}` });
  } catch (e) {
    if (!res.headersSent) send(res, e.status ?? 500, { error: String(e.message ?? e) });
  }
});

server.listen(opts.port, "127.0.0.1", () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
