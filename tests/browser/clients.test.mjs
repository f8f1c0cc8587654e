// The official JavaScript clients, unmodified but for the base URL, against `gondola serve` with
// the real default model: the `openai` package runs a tool-calling loop (the model calls a
// function, the client answers with a tool message, the model replies), streaming and not, and
// LangChain.js's ChatOpenAI does the same through bind_tools.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { AIMessage, HumanMessage, ToolMessage } from "@langchain/core/messages";
import { ChatOpenAI } from "@langchain/openai";
import OpenAI from "openai";

import * as support from "./support.mjs";

const UNITS = ["celsius", "fahrenheit"];
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: UNITS } },
      required: ["city", "unit"],
      additionalProperties: false,
    },
  },
};

/** Throws unless `args` match get_weather's schema. */
function checkWeather(args) {
  assert.deepEqual(Object.keys(args).sort(), ["city", "unit"]);
  assert.equal(typeof args.city, "string");
  assert.ok(UNITS.includes(args.unit), args.unit);
  return args;
}

const runWeather = (args) => JSON.stringify({ city: args.city, temperature: 18, unit: args.unit });

/** One turn, streamed or not: {content, calls, finish}. */
async function turn(client, messages, stream, options) {
  const request = { model: "default", messages, temperature: 0, max_tokens: 96, ...options };
  if (!stream) {
    const reply = await client.chat.completions.create(request);
    const choice = reply.choices[0];
    return { content: choice.message.content, calls: choice.message.tool_calls ?? [], finish: choice.finish_reason };
  }
  let content = "";
  let finish = null;
  const calls = [];
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    for (const choice of chunk.choices) {
      content += choice.delta.content ?? "";
      for (const delta of choice.delta.tool_calls ?? []) {
        calls[delta.index] ??= { id: "", type: "function", function: { name: "", arguments: "" } };
        const call = calls[delta.index];
        if (delta.id) call.id = delta.id;
        call.function.name += delta.function?.name ?? "";
        call.function.arguments += delta.function?.arguments ?? "";
      }
      finish = choice.finish_reason ?? finish;
    }
  }
  return { content: content || null, calls: calls.filter(Boolean), finish };
}

describe("official JavaScript clients", () => {
  let gondola;
  before(async () => {
    support.pullModel();
    gondola = await support.serve();
  });
  after(async () => {
    await gondola?.process.stop();
    support.removeTempDirs();
  });

  for (const stream of [false, true]) {
    test(`openai runs a tool-calling loop (${stream ? "streaming" : "not streaming"})`, async () => {
      const client = new OpenAI({ baseURL: `${gondola.url}/v1`, apiKey: "unused-locally" });
      const messages = [{ role: "user", content: "What is the weather in Paris, in celsius?" }];
      const called = await turn(client, messages, stream, {
        tools: [WEATHER],
        tool_choice: { type: "function", function: { name: "get_weather" } },
      });
      assert.equal(called.finish, "tool_calls");
      assert.equal(called.calls.length, 1);
      const [call] = called.calls;
      assert.equal(call.function.name, "get_weather");
      assert.match(call.id, /^call_/);
      const args = checkWeather(JSON.parse(call.function.arguments));
      messages.push({ role: "assistant", content: null, tool_calls: called.calls });
      messages.push({ role: "tool", tool_call_id: call.id, content: runWeather(args) });
      const answered = await turn(client, messages, stream, { tools: [WEATHER], tool_choice: "none" });
      assert.ok(["stop", "length"].includes(answered.finish), answered.finish);
      assert.equal(answered.calls.length, 0);
      assert.ok(answered.content && answered.content.length > 0);
    });
  }

  test("LangChain.js bind_tools calls the function and reads the reply", async () => {
    const model = new ChatOpenAI({
      model: "default",
      temperature: 0,
      maxTokens: 96,
      apiKey: "unused-locally",
      configuration: { baseURL: `${gondola.url}/v1` },
    });
    const history = [new HumanMessage("What is the weather in Rome, in celsius?")];
    const called = await model.bindTools([WEATHER], { tool_choice: "get_weather" }).invoke(history);
    assert.ok(called instanceof AIMessage);
    assert.equal(called.tool_calls.length, 1);
    const [call] = called.tool_calls;
    assert.equal(call.name, "get_weather");
    checkWeather(call.args);
    history.push(called, new ToolMessage({ content: runWeather(call.args), tool_call_id: call.id }));
    const answer = await model.bindTools([WEATHER], { tool_choice: "none" }).invoke(history);
    assert.equal(typeof answer.content, "string");
    assert.ok(answer.content.length > 0);
  });
});
