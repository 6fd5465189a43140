#!/usr/bin/env node
// Regenerates tests/golden/chat/: renders every conversation below with every published chat
// template of the DeepSeek-V3 family (/work/shared/chat_templates, copied to templates/) and with
// the chat_template of the DeepSeek-V3 tokenizer_config.json, writing golden.jsonl lines
//   {"template": name, "context": {...}, "text": rendered, "reference": ..., ["ids": [...]]}
// `ids` (for the tokenizer_config template) are the ids of the text with no special tokens
// added, from the official `tokenizers` binding.
//
// Two renderers are run and compared: @huggingface/jinja (the Template class, which sets
// trim_blocks and lstrip_blocks like transformers) and Python Jinja2 configured exactly as
// transformers' apply_chat_template (render_jinja2.py). Python Jinja2 is what transformers
// runs, so its text is the golden one; `reference` says "both" when the two agree and
// "jinja2" when @huggingface/jinja failed or differed (each such case is printed). A context
// Python Jinja2 refuses (e.g. raise_exception, a dict where a string is concatenated) is left
// out for that template, with one exception: Python's map/select filters return generators,
// which transformers' tojson cannot serialize, so llama.cpp's deepseek-r1 template
// (`tools | map(attribute='function') | tojson(indent=2)`) fails in Python with tools. Like
// llama.cpp and @huggingface/jinja, our interpreter returns lists there; those renders come from
// @huggingface/jinja (`reference`: "huggingface").
//
// Usage, from the repository root: node tests/golden/chat/generate.js
// Needs: npm install (node_modules/), and python3-jinja2 from Debian for /usr/bin/python3.
"use strict";
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");
const { Template } = require("@huggingface/jinja");
const { Tokenizer } = require("tokenizers");

const repoRoot = path.resolve(__dirname, "..", "..", "..");
const goldenDir = __dirname;
const sharedTemplates = path.resolve(repoRoot, "..", "shared", "chat_templates");
const modelDir = path.join(repoRoot, "node_modules", "@lenml", "tokenizer-deepseek_v3", "models");

const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(modelDir, "tokenizer_config.json"), "utf8"));
const deepseekTokens = {
  bos_token: tokenizerConfig.bos_token.content,
  eos_token: tokenizerConfig.eos_token.content,
};
const kimiTokens = { bos_token: "[BOS]", eos_token: "[EOS]" };

// ---- conversations ----------------------------------------------------------------------

const call = (name, args, id) => ({
  ...(id ? { id } : {}),
  type: "function",
  function: { name, arguments: JSON.stringify(args) },
});
const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. Paris" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
      },
      required: ["city"],
    },
  },
};
const searchTool = {
  type: "function",
  function: {
    name: "web_search",
    description: "Search the web. Returns the top results as «title — url» lines.",
    parameters: { type: "object", properties: { query: { type: "string" }, max_results: { type: "integer" } }, required: ["query"] },
  },
};

const toolTurn = [
  { role: "user", content: "What's the weather in Paris?" },
  { role: "assistant", content: null, tool_calls: [call("get_weather", { city: "Paris" }, "call_1")] },
  { role: "tool", tool_call_id: "call_1", content: '{"temperature": 21, "sky": "sunny"}' },
  { role: "assistant", content: "It is 21 °C and sunny in Paris." },
];
const twoCalls = [
  { role: "system", content: "You are a travel assistant." },
  { role: "user", content: "Weather in Paris and in Tokyo, please." },
  {
    role: "assistant",
    content: null,
    tool_calls: [call("get_weather", { city: "Paris" }, "call_a"), call("get_weather", { city: "Tokyo", unit: "celsius" }, "call_b")],
  },
  { role: "tool", tool_call_id: "call_a", content: "21 C, sunny" },
  { role: "tool", tool_call_id: "call_b", content: "17 C, rain" },
  { role: "assistant", content: "Paris: 21 °C and sunny. Tokyo: 17 °C with rain." },
  { role: "user", content: "Thanks!" },
];

const conversations = [
  { name: "single user", messages: [{ role: "user", content: "Hello!" }] },
  { name: "system and user", messages: [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "Hi there." }] },
  {
    name: "multi turn",
    messages: [
      { role: "user", content: "What is 2 + 2?" },
      { role: "assistant", content: "2 + 2 = 4." },
      { role: "user", content: "And times 3?" },
      { role: "assistant", content: "4 × 3 = 12." },
      { role: "user", content: "Thanks." },
    ],
  },
  {
    name: "two system prompts",
    messages: [
      { role: "system", content: "Rule one: be brief." },
      { role: "system", content: "Rule two: answer in French." },
      { role: "user", content: "Say hello." },
    ],
  },
  { name: "empty user content", messages: [{ role: "user", content: "" }] },
  {
    name: "empty assistant content",
    messages: [
      { role: "user", content: "Say nothing." },
      { role: "assistant", content: "" },
      { role: "user", content: "Good." },
    ],
  },
  {
    name: "unicode",
    messages: [
      { role: "system", content: "Réponds en 日本語 😀" },
      { role: "user", content: "你好，世界！こんにちは 안녕하세요 مرحبا بالعالم 👩‍👩‍👧‍👦 e\u0301" },
      { role: "assistant", content: "こんにちは！🌸 Ça va ?" },
      { role: "user", content: "Ελληνικά, русский, עברית." },
    ],
  },
  {
    name: "whitespace and newlines",
    messages: [
      { role: "system", content: "  leading and trailing spaces  \n" },
      { role: "user", content: "line one\nline two\r\n\ttabbed\n\n\nthree blank lines above" },
      { role: "assistant", content: "\n\nstarts with newlines" },
      { role: "user", content: "   " },
    ],
  },
  {
    name: "special tokens in text",
    messages: [
      { role: "user", content: "Literal <｜User｜> and <｜end▁of▁sentence｜> and {{ braces }} and {% tags %}" },
      { role: "assistant", content: "Echo: <|im_end|> [BOS] {# not a comment #}" },
      { role: "user", content: "ok" },
    ],
  },
  {
    name: "code",
    messages: [
      { role: "user", content: "Fix:\n```python\ndef f(x):\n    return x+1\n```" },
      { role: "assistant", content: "```python\ndef f(x: int) -> int:\n    return x + 1\n```\nDone." },
      { role: "user", content: "And in C?" },
    ],
  },
  { name: "tool call", messages: toolTurn },
  { name: "tool call then user", messages: [...toolTurn, { role: "user", content: "And tomorrow?" }] },
  { name: "tool call pending", messages: toolTurn.slice(0, 3) },
  { name: "two tool calls", messages: twoCalls },
  { name: "two tool calls pending", messages: twoCalls.slice(0, 5) },
  {
    name: "tool call with text",
    messages: [
      { role: "user", content: "Search for llamas." },
      { role: "assistant", content: "Let me search.", tool_calls: [call("web_search", { query: "llamas", max_results: 3 }, "call_s")] },
      { role: "tool", tool_call_id: "call_s", content: "Llama — https://en.wikipedia.org/wiki/Llama" },
      { role: "assistant", content: "Llamas are South American camelids." },
    ],
  },
  {
    name: "tool call empty content",
    messages: [
      { role: "user", content: "Weather in Oslo?" },
      { role: "assistant", content: "", tool_calls: [call("get_weather", { city: "Oslo" }, "call_o")] },
      { role: "tool", tool_call_id: "call_o", content: "-3 C, snow" },
      { role: "assistant", content: "Cold and snowy: −3 °C." },
    ],
  },
  {
    name: "unicode tool arguments",
    messages: [
      { role: "user", content: "東京の天気は？" },
      { role: "assistant", content: null, tool_calls: [call("get_weather", { city: "東京", note: "naïve \"quoted\" \\ back" }, "call_u")] },
      { role: "tool", tool_call_id: "call_u", content: "晴れ、22度" },
      { role: "assistant", content: "東京は晴れで22度です。" },
    ],
  },
  {
    name: "reasoning content",
    messages: [
      { role: "user", content: "Is 17 prime?" },
      { role: "assistant", reasoning_content: "Check divisors up to 4: 2, 3 do not divide 17.", content: "Yes, 17 is prime." },
      { role: "user", content: "And 21?" },
    ],
  },
  {
    name: "think in content",
    messages: [
      { role: "user", content: "Is 9 prime?" },
      { role: "assistant", content: "<think>\n9 = 3 × 3.\n</think>\n\nNo, 9 = 3 × 3." },
      { role: "user", content: "OK." },
    ],
  },
  {
    name: "assistant last",
    messages: [
      { role: "system", content: "Be terse." },
      { role: "user", content: "Capital of Italy?" },
      { role: "assistant", content: "Rome." },
    ],
  },
  {
    name: "with tools",
    tools: [weatherTool, searchTool],
    messages: [{ role: "system", content: "Use tools when useful." }, { role: "user", content: "Weather in Lima?" }],
  },
  { name: "with tools no system", tools: [weatherTool], messages: [{ role: "user", content: "Weather in Cairo?" }] },
  { name: "with tools and calls", tools: [weatherTool], messages: toolTurn },
  { name: "thinking on", extra: { thinking: true }, messages: [{ role: "user", content: "Think about 3 + 5." }] },
  { name: "enable_thinking on", extra: { enable_thinking: true }, messages: [{ role: "user", content: "Reason step by step: 6 × 7." }] },
  {
    name: "thinking with history",
    extra: { thinking: true },
    messages: [
      { role: "user", content: "First question." },
      { role: "assistant", reasoning_content: "Easy.", content: "First answer." },
      { role: "user", content: "Second question." },
    ],
  },
  {
    name: "thinking with tools",
    extra: { thinking: true },
    tools: [weatherTool],
    messages: [...toolTurn.slice(0, 3)],
  },
  {
    name: "named messages",
    messages: [
      { role: "system", content: "Moderate the chat." },
      { role: "user", name: "alice", content: "Hi Bob." },
      { role: "assistant", name: "bot", content: "Welcome, Alice." },
      { role: "user", name: "bob", content: "Hi Alice." },
    ],
  },
  {
    name: "content parts",
    messages: [
      { role: "user", content: [{ type: "text", text: "Describe " }, { type: "text", text: "this picture." }] },
      { role: "assistant", content: "A cat." },
      { role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/cat.png" } }, { type: "text", text: "And this?" }] },
    ],
  },
  {
    name: "dict arguments",
    messages: [
      { role: "user", content: "Weather in Rome?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_d", type: "function", function: { name: "get_weather", arguments: { city: "Rome", days: 3, metric: true, extra: null, tags: ["a", "b"] } } }] },
      { role: "tool", tool_call_id: "call_d", content: "25 C" },
      { role: "assistant", content: "25 °C in Rome." },
    ],
  },
  {
    name: "long conversation",
    messages: Array.from({ length: 24 }, (_, i) =>
      i % 2 === 0 ? { role: "user", content: `Question number ${i / 2 + 1}: what is ${i} squared?` } : { role: "assistant", content: `${i - 1} squared is ${(i - 1) ** 2}.` },
    ),
  },
  {
    name: "long message",
    messages: [{ role: "user", content: "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(200) }],
  },
  {
    name: "tool message first",
    messages: [
      { role: "tool", tool_call_id: "x", content: "orphan tool output" },
      { role: "user", content: "What was that?" },
    ],
  },
  {
    name: "developer role",
    messages: [{ role: "developer", content: "Developer note." }, { role: "user", content: "Hi." }],
  },
];

// ---- rendering ----------------------------------------------------------------------------

function templatesToRender() {
  const templates = fs
    .readdirSync(sharedTemplates)
    .filter((file) => file.endsWith(".jinja"))
    .sort()
    .map((file) => ({ name: file.replace(/\.jinja$/, ""), source: fs.readFileSync(path.join(sharedTemplates, file), "utf8") }));
  templates.push({ name: "tokenizer_config-deepseek_v3", source: tokenizerConfig.chat_template, withIds: true });
  return templates;
}

function contextsFor(templateName) {
  const tokens = templateName.toLowerCase().includes("kimi") ? kimiTokens : deepseekTokens;
  const contexts = [];
  for (const conversation of conversations) {
    for (const addGenerationPrompt of [false, true]) {
      const context = { messages: conversation.messages, add_generation_prompt: addGenerationPrompt, ...tokens };
      if (conversation.tools) context.tools = conversation.tools;
      Object.assign(context, conversation.extra || {});
      contexts.push({ conversation: conversation.name, context });
    }
  }
  return contexts;
}

function renderWithPython(requests) {
  const input = requests.map((request) => JSON.stringify(request)).join("\n") + "\n";
  const output = execFileSync("/usr/bin/python3", [path.join(goldenDir, "render_jinja2.py")], { input, maxBuffer: 1 << 30 });
  return output.toString("utf8").trim().split("\n").map((line) => JSON.parse(line));
}

async function main() {
  const tokenizer = Tokenizer.fromFile(path.join(modelDir, "tokenizer.json"));
  const templates = templatesToRender();
  fs.mkdirSync(path.join(goldenDir, "templates"), { recursive: true });
  const lines = [];
  let differences = 0;
  for (const template of templates) {
    fs.writeFileSync(path.join(goldenDir, "templates", `${template.name}.jinja`), template.source);
    const contexts = contextsFor(template.name);
    const pythonResults = renderWithPython(contexts.map(({ context }) => ({ template: template.source, context })));
    let accepted = 0;
    for (let i = 0; i < contexts.length; ++i) {
      const { conversation, context } = contexts[i];
      let huggingface;
      try {
        huggingface = { text: new Template(template.source).render(JSON.parse(JSON.stringify(context))) };
      } catch (error) {
        huggingface = { error: String(error.message || error) };
      }
      const python = pythonResults[i];
      const where = `${template.name} / ${conversation} / add_generation_prompt=${context.add_generation_prompt}`;
      const generatorOnly = python.error !== undefined && python.error.includes("generator is not JSON serializable");
      if (python.error !== undefined && !(generatorOnly && huggingface.error === undefined)) {
        if (huggingface.error === undefined) console.error(`only @huggingface/jinja renders ${where}; jinja2: ${python.error}`);
        continue;
      }
      let reference = "both";
      if (generatorOnly) {
        reference = "huggingface";
        python.text = huggingface.text;
      } else if (huggingface.error !== undefined) {
        reference = "jinja2";
        console.error(`@huggingface/jinja fails on ${where}: ${huggingface.error}`);
      } else if (huggingface.text !== python.text) {
        reference = "jinja2";
        ++differences;
        console.error(`renderers differ on ${where}:\n  huggingface: ${JSON.stringify(huggingface.text)}\n  jinja2:      ${JSON.stringify(python.text)}`);
      }
      const line = { template: template.name, conversation, context, text: python.text, reference };
      if (python.mutable) line.list_mutation = true;
      if (template.withIds) line.ids = Array.from((await tokenizer.encode(python.text, null, { addSpecialTokens: false })).getIds());
      lines.push(line);
      ++accepted;
    }
    console.error(`${template.name}: ${accepted} of ${contexts.length} contexts rendered`);
  }
  fs.writeFileSync(path.join(goldenDir, "golden.jsonl"), lines.map((line) => JSON.stringify(line)).join("\n") + "\n");
  console.error(`wrote ${lines.length} golden renders (${differences} where the two renderers differ)`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
