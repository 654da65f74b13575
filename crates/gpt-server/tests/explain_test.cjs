// The teaching page at `/explain` in headless Chromium, driven by playwright-core (NODE_PATH
// must point at a node_modules with playwright-core, as scripts/browser_check.sh sets it).
//
//   node explain_test.cjs BASE_URL SCREENSHOT_DIR
//
// Runs an English prompt through every step (tokens, embedding, meaning as direction,
// attention, residual stream, unembedding, parameters) and checks that each shows what the
// server returned; compares two tokens; moves the temperature slider with the keyboard and
// checks the probabilities (and T = 0); enlarges an attention head and checks its rows and its
// causal mask; samples a next token; switches the language; runs a Korean prompt through every
// step; checks that nothing was fetched from another host and that the page threw no errors.
// The page_equals_cli_<step> checks compare what the page shows with `gpt inspect ... --json`
// for the same prompt: GPT_BIN is the gpt binary, MODEL the model (default
// smollm2-135m-instruct, the one the server must be serving), and the environment carries
// GPT_RS_HOME. Without GPT_BIN those checks are not run and one FAIL line says so.
// Saves SCREENSHOT_DIR/explain-<step>.png and explain-ko-<step>.png. Set API_KEY when the
// server wants one. Prints one line per check and `N passed, M failed`.

const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");
const { execFileSync } = require("child_process");

const [base, shots] = process.argv.slice(2);
if (!base || !shots) { console.error("usage: node explain_test.cjs BASE_URL SCREENSHOT_DIR"); process.exit(2); }
fs.mkdirSync(shots, { recursive: true });
const STEPS = ["tokens", "embedding", "direction", "attention", "lens", "unembedding", "params"];
const EN_PROMPT = "The fluffy blue creature roamed the verdant forest";
const KO_PROMPT = "귀여운 파란 생물이 숲을 돌아다녔다";
const LONG = 300000; // ms: a real model on a small machine, one attention request per layer

let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log("ok   " + name); }
  else { failed++; console.log("FAIL " + name + (detail ? ": " + detail : "")); }
}

// ---- the CLI, for page_equals_cli_<step> ----
const GPT_BIN = process.env.GPT_BIN || "";
const sent = {}; // the body of the page's last POST to each path, to ask the CLI the same
const MODEL = process.env.MODEL || "smollm2-135m-instruct";
function cli(args) {
  const out = execFileSync(GPT_BIN, [...args, "--model", MODEL],
    { env: process.env, maxBuffer: 256 << 20, stdio: ["ignore", "pipe", "pipe"] });
  return JSON.parse(out.toString("utf8"));
}
// A check against the CLI: `body` returns [ok, detail]; an exception (the CLI failed, its
// output was not JSON, the page lacked an element) is a failure with its message.
async function cliCheck(name, body) {
  if (!GPT_BIN) return;
  try {
    const [ok, detail] = await body();
    check(name, ok, detail);
  } catch (e) {
    check(name, false, (e.stderr ? String(e.stderr).trim() + " " : "") + (e.message || String(e)));
  }
}
// |a - b| <= tol, absolute; relative to |b| when rel (but never tighter than tol * 1e-3 absolute).
function near(a, b, tol, rel) {
  if (!Number.isFinite(a) || !Number.isFinite(b)) return false;
  const lim = rel ? tol * Math.max(Math.abs(b), 1e-3) : tol;
  return Math.abs(a - b) <= lim;
}
// The first index where two lists differ (by `same`), or -1; a length mismatch counts.
function firstDiff(xs, ys, same) {
  const n = Math.max(xs.length, ys.length);
  for (let i = 0; i < n; i++) if (i >= xs.length || i >= ys.length || !same(xs[i], ys[i], i)) return i;
  return -1;
}
// How the page shows a decoded piece (showPiece in explain.html).
function shownPiece(p) { return String(p).replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5") || "\u2205"; }
function num(n) { return Number(n).toLocaleString("en-US"); }

// tokens: the chips' ids (and pieces) are those of `gpt inspect tokens`.
async function cliTokens(page, name, prompt) {
  await cliCheck(name, async () => {
    const c = cli(["inspect", "tokens", prompt, "--json"]);
    const chips = await page.$$eval("#tok-chips .tok", (cs) => cs.map((x) => ({ id: Number(x.dataset.id), piece: x.querySelector(".piece").textContent })));
    const d = firstDiff(chips, c.ids, (ch, id) => ch.id === id);
    const dp = c.pieces ? firstDiff(chips, c.pieces, (ch, p) => ch.piece === shownPiece(p)) : -1;
    return [d < 0 && dp < 0, `page ${JSON.stringify(chips.map((x) => x.id))} vs cli ${JSON.stringify(c.ids)}` +
      (dp >= 0 ? `; piece ${dp}: page ${JSON.stringify(chips[dp] && chips[dp].piece)} vs cli ${JSON.stringify(c.pieces[dp])}` : "")];
  });
}
// embedding: one row per token with its id, and the vectors the page drew are the CLI's.
async function cliEmbedding(page, name, prompt) {
  await cliCheck(name, async () => {
    const c = cli(["inspect", "embed", "vectors", prompt, "--json"]);
    const pg = await page.evaluate(() => ({
      ids: [...document.querySelectorAll("#emb-rows .emb-row")].map((r) => Number(r.dataset.id)),
      widths: [...document.querySelectorAll("#emb-rows .emb-row canvas")].map((cv) => cv.width),
      vectors: state.emb ? state.emb.vectors : [],
    }));
    if (pg.ids.length !== c.vectors.length) return [false, `${pg.ids.length} rows on the page, ${c.vectors.length} vectors from the cli`];
    const di = firstDiff(pg.ids, c.ids, (a, b) => a === b);
    if (di >= 0) return [false, `row ${di}: id ${pg.ids[di]} on the page, ${c.ids[di]} from the cli`];
    const n = c.vectors.length, rows = [...new Set([0, n >> 1, n - 1])];
    for (const i of rows) {
      const a = pg.vectors[i] || [], b = c.vectors[i];
      if (pg.widths[i] !== b.length) return [false, `row ${i}: canvas ${pg.widths[i]} wide, vector has ${b.length}`];
      const k = firstDiff(a, b, (x, y) => near(x, y, 1e-6));
      if (k >= 0) return [false, `row ${i} (id ${c.ids[i]}) component ${k}: page ${a[k]} vs cli ${b[k]} (lengths ${a.length}, ${b.length})`];
    }
    return [true, ""];
  });
}
// attention: the enlarged head's cells (and every head of its layer the grid drew) are the
// CLI's pattern for that layer.
async function cliAttention(page, name, prompt) {
  await cliCheck(name, async () => {
    const pg = await page.evaluate(() => {
      const b = document.getElementById("head-big");
      const L = Number(b.dataset.layer), H = Number(b.dataset.head);
      return { L, H, n: Number(b.dataset.n),
        cells: [...b.querySelectorAll("rect.cell")].map((c) => [Number(c.dataset.row), Number(c.dataset.col), parseFloat(c.dataset.p)]),
        layer: state.attn && state.attn.layers[L] ? state.attn.layers[L].map((h) => ({ head: h.head, pattern: h.pattern })) : [] };
    });
    if (!Number.isInteger(pg.L) || !Number.isInteger(pg.H)) return [false, "no enlarged head"];
    const heads = cli(["inspect", "attention", prompt, "--layer", String(pg.L), "--all-heads", "--json"]);
    const hd = heads.find((h) => h.head === pg.H);
    if (!hd) return [false, `the cli has no head ${pg.H} in layer ${pg.L}`];
    const n = hd.pattern.length;
    if (pg.n !== n || pg.cells.length !== n * n) return [false, `${pg.cells.length} cells for ${pg.n} tokens on the page, ${n} tokens from the cli`];
    for (const [i, j, p] of pg.cells) {
      if (!near(p, hd.pattern[i][j], 1e-4)) return [false, `layer ${pg.L} head ${pg.H} cell (${i}, ${j}): page ${p} vs cli ${hd.pattern[i][j]}`];
    }
    if (pg.layer.length !== heads.length) return [false, `${pg.layer.length} heads drawn for layer ${pg.L}, ${heads.length} from the cli`];
    for (const h of heads) {
      const ph = pg.layer.find((x) => x.head === h.head);
      if (!ph) return [false, `layer ${pg.L}: head ${h.head} not drawn`];
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
        const a = (ph.pattern[i] || [])[j], b = h.pattern[i][j];
        if (!near(a, b, 1e-4)) return [false, `layer ${pg.L} head ${h.head} (grid) cell (${i}, ${j}): page ${a} vs cli ${b}`];
      }
    }
    return [true, ""];
  });
}
// lens: each row's top token (id, shown piece) and its probability are the CLI's, asked
// with the same top as the page's request.
async function cliLens(page, name, prompt) {
  await cliCheck(name, async () => {
    const req = sent["/inspect/lens"];
    if (!req || req.prompt !== prompt) return [false, "the page sent no /inspect/lens request for this prompt"];
    const top = String(req.top === undefined ? 1 : req.top);
    const c = cli(["inspect", "lens", prompt, "--top", top, "--json"]);
    const rows = await page.evaluate(() => [...document.querySelectorAll("tr.lens-row")].map((r, k) => ({
      layer: Number(r.dataset.layer), p: parseFloat(r.dataset.p), piece: r.querySelector("td.top .piece").textContent,
      // data-id on the row; the page's state where the page predates it
      id: r.dataset.id !== undefined ? Number(r.dataset.id) : Number(state.lens.layers[k].top[0].id), fromDom: r.dataset.id !== undefined })));
    if (rows.length !== c.layers.length) return [false, `${rows.length} rows on the page, ${c.layers.length} layers from the cli`];
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k], L = c.layers[k], t = L.top[0];
      if (r.layer !== L.layer || r.id !== t.id || r.piece !== shownPiece(t.piece) || !near(r.p, t.prob, 1e-5))
        return [false, `row ${k}: page layer ${r.layer} id ${r.id} ${JSON.stringify(r.piece)} p ${r.p} vs cli layer ${L.layer} id ${t.id} ${JSON.stringify(shownPiece(t.piece))} p ${t.prob}`];
    }
    return [true, rows.every((r) => r.fromDom) ? "" : "(ids from state: the served page has no data-id on lens rows)"];
  });
}
// unembedding: the logit bars are the CLI's top 20, in order.
async function cliLogits(page, name, prompt) {
  await cliCheck(name, async () => {
    const c = cli(["inspect", "logits", prompt, "--top", "20", "--json"]);
    const bars = await page.$$eval("#logit-bars .logit-bar", (bs) => bs.map((b) => ({ id: Number(b.dataset.id), logit: parseFloat(b.dataset.logit) })));
    const k = firstDiff(bars, c.top, (a, b) => a.id === b.id && near(a.logit, b.logit, 1e-4));
    return [k < 0, k < 0 ? "" : `bar ${k}: page ${JSON.stringify(bars[k])} vs cli ${JSON.stringify(c.top[k] && { id: c.top[k].id, logit: c.top[k].logit })} (${bars.length} bars, ${c.top.length} from the cli)`];
  });
}
// temperature: the probability bars at temperature T (as "0.50") are the CLI's.
async function cliTemperature(page, name, prompt, T) {
  await cliCheck(name, async () => {
    const d = await probsAt(page, T);
    const ids = await page.$$eval("#probs .prob-bar", (bs) => bs.map((b) => Number(b.dataset.id)));
    const req = sent["/inspect/temperature"];
    if (!req || req.prompt !== prompt || Number(req.temperatures[0]).toFixed(2) !== T)
      return [false, "the page's last /inspect/temperature request was " + JSON.stringify(req)];
    const c = cli(["inspect", "temperature", prompt, "--temperatures", T, "--top", String(req.top), "--json"]);
    const k = firstDiff(d.p, c.tokens, (p, tk, i) => ids[i] === tk.id && near(p, tk.probs[0], 1e-5));
    if (k >= 0) return [false, `bar ${k} at T = ${T}: page id ${ids[k]} p ${d.p[k]} vs cli ${JSON.stringify(c.tokens[k] && { id: c.tokens[k].id, p: c.tokens[k].probs[0] })}`];
    return [near(d.rest, c.rest[0], 1e-5), `rest at T = ${T}: page ${d.rest} vs cli ${c.rest[0]}`];
  });
}

// Every step of the current run finished (done or error); returns their states.
async function waitRun(page) {
  await page.waitForFunction((steps) => steps.every((s) => {
    const st = document.getElementById(s).dataset.state;
    return st === "done" || st === "error";
  }), STEPS, { timeout: LONG, polling: 200 });
  return page.evaluate((steps) => Object.fromEntries(steps.map((s) => [s, document.getElementById(s).dataset.state])), STEPS);
}
async function errors(page) {
  return page.$$eval(".error", (es) => es.map((e) => e.textContent).filter((x) => x.trim()));
}
// The probabilities shown once the bars are those of temperature T (as "0.50").
async function probsAt(page, T) {
  await page.waitForSelector(`#probs[data-t="${T}"]`, { timeout: 60000 });
  return page.evaluate(() => ({
    p: [...document.querySelectorAll("#probs .prob-bar")].map((b) => parseFloat(b.dataset.p)),
    rest: parseFloat(document.querySelector("#probs .prob-rest").dataset.p),
  }));
}
async function shootSteps(page, prefix, which) {
  for (const s of which) {
    await page.click("#step-" + s);
    await page.waitForTimeout(150);
    await page.screenshot({ path: path.join(shots, prefix + s + ".png"), fullPage: true });
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, locale: "en-US" });
    const foreign = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(base)) { foreign.push(r.url()); return; }
      if (r.method() === "POST") { try { sent[new URL(r.url()).pathname] = JSON.parse(r.postData()); } catch (e) { /* not JSON */ } }
    });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));

    await page.goto(base + "/explain");
    await page.waitForFunction(() => !document.getElementById("model").textContent.startsWith("loading"));
    const stepButtons = await page.$$eval(".step", (bs) => bs.map((b) => b.id));
    check("loads", (await page.textContent("#model")).length > 3 &&
      STEPS.every((s) => stepButtons.includes("step-" + s)) && (await page.locator(".error").count()) === 0,
      JSON.stringify(stepButtons));
    check("english_ui_for_an_english_browser", (await page.getAttribute("html", "lang")) === "en");
    if (process.env.API_KEY) await page.fill("#api-key", process.env.API_KEY);
    const info = await page.evaluate(() => fetch("/page/info").then((r) => r.json()));
    if (!GPT_BIN) check("page_equals_cli", false, "GPT_BIN is needed (the gpt binary, with MODEL and GPT_RS_HOME): the page_equals_cli_<step> checks were not run");

    // ---- an English prompt through every step ----
    await page.fill("#prompt", EN_PROMPT);
    await page.click("#run");
    const states = await waitRun(page);
    check("english_run_every_step_done", Object.values(states).every((s) => s === "done"), JSON.stringify(states));
    check("english_run_no_error_shown", (await errors(page)).length === 0, (await errors(page)).join("; "));
    // The ids the server gives for this prompt, asked independently of the page's own request.
    const ref = await page.evaluate((prompt) => api("/inspect/tokens", { prompt }), EN_PROMPT);
    const chips = await page.$$eval("#tok-chips .tok", (cs) => cs.map((c) => Number(c.dataset.id)));
    check("tokens_one_chip_per_id", chips.length === ref.ids.length && chips.every((id, i) => id === ref.ids[i]),
      `${chips.length} chips, ${ref.ids.length} ids`);
    const note = await page.textContent("#tok-note");
    check("tokens_note_counts_tokens_and_words", note.includes(String(ref.ids.length)) && /not words/.test(note), note);
    const visibleSpace = await page.$$eval("#tok-chips .tok .piece", (ps) => ps.some((p) => p.textContent.startsWith("\u2423")));
    check("tokens_leading_space_visible", visibleSpace);
    const rows = await page.locator("#emb-rows .emb-row canvas").count();
    check("embedding_one_row_per_token", rows === ref.ids.length, `${rows} rows`);
    const words = (await page.inputValue("#dir-words")).split(/[\s,]+/).filter(Boolean);
    const pts = await page.$$eval("#scatter circle.pt", (cs) => cs.map((c) => [parseFloat(c.dataset.x), parseFloat(c.dataset.y)]));
    check("scatter_one_point_per_word", pts.length === words.length && pts.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
      `${pts.length} points for ${words.length} words`);
    check("direction_table_rows", (await page.locator("#dir-table tr.dir-row").count()) === words.length);
    const heads = await page.$$eval("#attn-grid canvas.head", (cs) => ({ n: cs.length, loaded: cs.filter((c) => c.dataset.loaded).length }));
    check("attention_grid_all_heads_loaded", heads.n === info.n_layer * info.n_head && heads.loaded === heads.n,
      `${heads.loaded}/${heads.n} of ${info.n_layer} x ${info.n_head}`);
    const lens = await page.$$eval("tr.lens-row", (rs) => rs.map((r) => parseFloat(r.dataset.p)));
    check("lens_one_row_per_layer", lens.length === info.n_layer && lens.every((p) => p >= 0 && p <= 1),
      `${lens.length} rows for ${info.n_layer} layers`);
    const logits = await page.$$eval("#logit-bars .logit-bar", (bs) => bs.map((b) => parseFloat(b.dataset.logit)));
    check("logit_bars_present", logits.length >= 2 && logits.length <= 20 && logits.every(Number.isFinite) &&
      logits.every((l, i) => i === 0 || l <= logits[i - 1]), JSON.stringify(logits.slice(0, 5)));
    const parts = await page.evaluate(() => ({
      ours: document.querySelectorAll("#params-ours tr.param-part").length,
      gpt3: document.querySelectorAll("#params-gpt3 tr.param-part").length,
      share: [...document.querySelectorAll(".attn-share")].map((e) => parseFloat(e.dataset.share)),
    }));
    check("params_parts_present", parts.ours >= 3 && parts.gpt3 >= 3 && parts.share.length === 2 &&
      parts.share.every((s) => s > 0 && s < 1), JSON.stringify(parts));

    // ---- what the page shows equals `gpt inspect ... --json` for the same prompt ----
    await cliTokens(page, "page_equals_cli_tokens", EN_PROMPT);
    await cliEmbedding(page, "page_equals_cli_embedding", EN_PROMPT);
    await cliCheck("page_equals_cli_direction", async () => {
      const dx = (await page.inputValue("#dir-x")).trim(), dy = (await page.inputValue("#dir-y")).trim();
      const cx = cli(["inspect", "embed", "project", "--direction", dx, ...words, "--json"]);
      const cy = cli(["inspect", "embed", "project", "--direction", dy, ...words, "--json"]);
      const shown = await page.evaluate(() => ({
        pts: [...document.querySelectorAll("#scatter circle.pt")].map((c) => ({ word: c.dataset.word, x: parseFloat(c.dataset.x), y: parseFloat(c.dataset.y) })),
        table: [...document.querySelectorAll("#dir-table tr.dir-row")].map((r) => [...r.cells].map((c) => c.textContent)),
      }));
      if (shown.pts.length !== cx.words.length || cx.words.length !== cy.words.length)
        return [false, `${shown.pts.length} points, ${cx.words.length} and ${cy.words.length} words from the cli`];
      for (let k = 0; k < shown.pts.length; k++) {
        const p = shown.pts[k], wx = cx.words[k], wy = cy.words[k];
        if (p.word !== wx.word || !near(p.x, wx.projection, 1e-5, true) || !near(p.y, wy.projection, 1e-5, true))
          return [false, `${p.word}: page (${p.x}, ${p.y}) vs cli ${wx.word} (${wx.projection}, ${wy.projection})`];
        const row = shown.table[k] || [];
        if (row[1] !== wx.projection.toFixed(3) || row[2] !== wy.projection.toFixed(3))
          return [false, `table row ${k}: ${JSON.stringify(row)} vs cli ${wx.projection.toFixed(3)}, ${wy.projection.toFixed(3)}`];
      }
      return [true, ""];
    });
    await cliLens(page, "page_equals_cli_lens", EN_PROMPT);
    await cliLogits(page, "page_equals_cli_unembedding", EN_PROMPT);
    await cliCheck("page_equals_cli_params", async () => {
      const shown = await page.evaluate(() => Object.fromEntries(["ours", "gpt3"].map((k) => {
        const box = document.getElementById("params-" + k);
        return [k, { parts: [...box.querySelectorAll("tr.param-part")].map((r) => ({ part: r.dataset.part, total: Number(r.dataset.total), shown: r.cells[2].textContent })),
          share: parseFloat(box.querySelector(".attn-share").dataset.share), shareText: box.querySelector(".attn-share").textContent,
          total: box.querySelector("table.param-table tbody tr:last-child th.num").textContent }];
      })));
      const want = { ours: cli(["inspect", "params", "--json"]).tables[0], gpt3: cli(["inspect", "params", "--preset", "gpt3-175b", "--json"]).tables[0] };
      for (const k of ["ours", "gpt3"]) {
        const a = shown[k], b = want[k];
        const d = firstDiff(a.parts, b.parts, (x, y) => x.part === y.part && x.total === y.total && x.shown === num(y.total));
        if (d >= 0) return [false, `${k} part ${d}: page ${JSON.stringify(a.parts[d])} vs cli ${JSON.stringify(b.parts[d] && { part: b.parts[d].part, total: b.parts[d].total })}`];
        if (a.total !== num(b.total)) return [false, `${k} total: page ${a.total} vs cli ${num(b.total)}`];
        if (!near(a.share, b.attention_share, 1e-12) || !a.shareText.includes((100 * b.attention_share).toFixed(1)))
          return [false, `${k} attention share: page ${a.share} (${JSON.stringify(a.shareText)}) vs cli ${b.attention_share}`];
      }
      return [true, ""];
    });
    await shootSteps(page, "explain-", STEPS);

    // ---- two tokens compared ----
    await page.click("#step-embedding");
    await page.locator("#emb-rows .pick").nth(1).click();
    await page.locator("#emb-rows .pick").nth(3).click();
    await page.waitForSelector("#similarity[data-cosine]", { timeout: 60000 }).catch(() => null);
    const sim = await page.evaluate(() => {
      const s = document.getElementById("similarity");
      return { dot: parseFloat(s.dataset.dot), cos: parseFloat(s.dataset.cosine), picked: document.querySelectorAll(".pick.picked").length };
    });
    check("two_tokens_show_a_similarity", sim.picked === 2 && Number.isFinite(sim.dot) && Number.isFinite(sim.cos) &&
      sim.cos >= -1 - 1e-6 && sim.cos <= 1 + 1e-6, JSON.stringify(sim));
    await cliCheck("page_equals_cli_similarity", async () => {
      const [A, B] = await page.evaluate(() => state.picks.map((i) => Number(document.querySelector(`#emb-rows .pick[data-i="${i}"]`).dataset.id)));
      const c = cli(["inspect", "embed", "similarity", "#" + A, "#" + B, "--json"]);
      return [near(sim.dot, c.dot, 1e-5, true) && near(sim.cos, c.cosine, 1e-5, true),
        `#${A} #${B}: page dot ${sim.dot} cosine ${sim.cos} vs cli dot ${c.dot} cosine ${c.cosine}`];
    });

    // ---- temperature ----
    await page.click("#step-unembedding");
    const sum = (d) => d.p.reduce((a, b) => a + b, 0) + d.rest;
    const at1 = await probsAt(page, "1.00");
    await page.focus("#temp");
    for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowLeft");
    const cold = await probsAt(page, "0.50");
    await cliTemperature(page, "page_equals_cli_temperature", EN_PROMPT, "0.50");
    check("temperature_slider_shows_its_value", (await page.textContent("#temp-val")) === "0.50");
    check("lower_temperature_sharpens", cold.p[0] > at1.p[0] + 1e-6 && cold.rest < at1.rest + 1e-9,
      `top ${at1.p[0]} -> ${cold.p[0]}, rest ${at1.rest} -> ${cold.rest}`);
    check("probabilities_sum_to_one", Math.abs(sum(at1) - 1) < 1e-3 && Math.abs(sum(cold) - 1) < 1e-3,
      `${sum(at1)}, ${sum(cold)}`);
    for (let i = 0; i < 20; i++) await page.keyboard.press("ArrowRight");
    const hot = await probsAt(page, "1.50");
    check("higher_temperature_flattens", hot.p[0] < at1.p[0] - 1e-6 && Math.abs(sum(hot) - 1) < 1e-3,
      `top ${hot.p[0]} at T = 1.50 vs ${at1.p[0]}; sum ${sum(hot)}`);
    for (let i = 0; i < 40; i++) await page.keyboard.press("ArrowLeft");
    const zero = await probsAt(page, "0.00");
    check("temperature_zero_is_argmax", Math.abs(zero.p[0] - 1) < 1e-6 && Math.abs(sum(zero) - 1) < 1e-3 &&
      zero.p.slice(1).every((p) => p < 1e-6), JSON.stringify(zero.p.slice(0, 3)) + " rest " + zero.rest);
    await page.screenshot({ path: path.join(shots, "explain-temperature-0.png"), fullPage: true });
    for (let i = 0; i < 20; i++) await page.keyboard.press("ArrowRight");
    await probsAt(page, "1.00");

    // ---- an attention head enlarged ----
    await page.click("#step-attention");
    const L = info.n_layer - 1, H = Math.min(1, info.n_head - 1);
    await page.click(`canvas.head[data-layer="${L}"][data-head="${H}"]`);
    await page.waitForSelector(`#head-big[data-layer="${L}"][data-head="${H}"] rect.cell`, { timeout: 10000 }).catch(() => null);
    const big = await page.evaluate(() => {
      const cells = [...document.querySelectorAll("#head-big rect.cell")];
      const n = Number(document.getElementById("head-big").dataset.n);
      const rows = new Array(n).fill(0);
      let above = 0, aboveMasked = 0, aboveCount = 0;
      for (const c of cells) {
        const i = Number(c.dataset.row), j = Number(c.dataset.col), p = parseFloat(c.dataset.p);
        rows[i] += p;
        if (j > i) { aboveCount++; above = Math.max(above, Math.abs(p)); if (c.classList.contains("masked")) aboveMasked++; }
      }
      return { n, cells: cells.length, rows, above, aboveMasked, aboveCount };
    });
    check("enlarged_head_has_every_cell", big.n > 1 && big.cells === big.n * big.n, `${big.cells} cells for ${big.n} tokens`);
    check("enlarged_head_rows_sum_to_one", big.rows.length > 0 && big.rows.every((s) => Math.abs(s - 1) < 1e-3),
      JSON.stringify(big.rows.map((s) => s.toFixed(4))));
    check("enlarged_head_is_causal", big.above === 0 && big.aboveMasked === big.aboveCount && big.aboveCount === big.n * (big.n - 1) / 2,
      JSON.stringify(big));
    await page.hover(`#head-big rect.cell[data-row="${big.n - 1}"][data-col="1"]`);
    const tip = await page.textContent("#head-tip");
    check("hovering_a_cell_explains_it", /looks at key token 1 .*weight p = [0-9.]+.*sum over j/.test(tip), tip);
    await page.hover(`#head-big rect.cell[data-row="0"][data-col="1"]`);
    check("hovering_a_masked_cell_says_so", /Masked/.test(await page.textContent("#head-tip")));
    await cliAttention(page, "page_equals_cli_attention", EN_PROMPT);
    await page.screenshot({ path: path.join(shots, "explain-attention-head.png"), fullPage: true });

    // ---- next token: sample, append, run again ----
    await page.click("#step-unembedding");
    const before = await page.inputValue("#prompt");
    const runBefore = await page.evaluate(() => state.run);
    await page.click("#next-token");
    await page.waitForFunction((r) => state.run > r, runBefore, { timeout: LONG }).catch(() => null);
    const after = await page.inputValue("#prompt");
    const appended = await page.evaluate(() => state.appended);
    const states2 = await waitRun(page);
    check("next_token_appends_text", appended.length > 0 && after === before + appended &&
      (await page.textContent("#appended")).length > 0, JSON.stringify({ before, after, appended }));
    check("next_token_runs_the_steps_again", Object.values(states2).every((s) => s === "done") &&
      (await errors(page)).length === 0, JSON.stringify(states2) + " " + (await errors(page)).join("; "));
    const ref2 = await page.evaluate((prompt) => api("/inspect/tokens", { prompt }), after);
    check("next_token_tokens_updated", (await page.locator("#tok-chips .tok").count()) === ref2.ids.length);
    await page.screenshot({ path: path.join(shots, "explain-next-token.png"), fullPage: true });

    // ---- language ----
    await page.click("#step-tokens");
    const enText = await page.textContent("#tokens .explain");
    const enRun = await page.textContent("#run");
    await page.click("#lang");
    const koText = await page.textContent("#tokens .explain");
    check("language_switch_to_korean", (await page.getAttribute("html", "lang")) === "ko" && koText !== enText &&
      /[\uac00-\ud7a3]/.test(koText) && (await page.textContent("#run")) !== enRun, koText.slice(0, 60));
    const koNote = await page.textContent("#tok-note");
    check("korean_dynamic_text", /[\uac00-\ud7a3]/.test(koNote), koNote);
    await page.click("#lang");
    check("language_switch_back", (await page.getAttribute("html", "lang")) === "en" &&
      (await page.textContent("#tokens .explain")) === enText);
    await page.click("#lang");

    // ---- a Korean prompt through every step ----
    await page.fill("#prompt", KO_PROMPT);
    await page.click("#run");
    const states3 = await waitRun(page);
    const koErrors = await errors(page);
    check("korean_run_every_step_without_error", Object.values(states3).every((s) => s === "done") && koErrors.length === 0,
      JSON.stringify(states3) + " " + koErrors.join("; "));
    const ref3 = await page.evaluate((prompt) => api("/inspect/tokens", { prompt }), KO_PROMPT);
    check("korean_tokens_one_chip_per_id", (await page.locator("#tok-chips .tok").count()) === ref3.ids.length,
      `${ref3.ids.length} ids`);
    const koHeads = await page.$$eval("#attn-grid canvas.head[data-loaded]", (cs) => cs.length);
    check("korean_attention_loaded", koHeads === info.n_layer * info.n_head, `${koHeads}`);
    check("korean_lens_rows", (await page.locator("tr.lens-row").count()) === info.n_layer);
    await cliTokens(page, "page_equals_cli_korean_tokens", KO_PROMPT);
    await cliEmbedding(page, "page_equals_cli_korean_embedding", KO_PROMPT);
    await cliLens(page, "page_equals_cli_korean_lens", KO_PROMPT);
    await cliLogits(page, "page_equals_cli_korean_unembedding", KO_PROMPT);
    await page.click("#step-unembedding");
    await cliTemperature(page, "page_equals_cli_korean_temperature", KO_PROMPT, "1.00");
    await page.click("#step-attention");
    await page.click(`canvas.head[data-layer="0"][data-head="0"]`);
    await page.waitForSelector(`#head-big[data-layer="0"][data-head="0"] rect.cell`, { timeout: 10000 }).catch(() => null);
    await cliAttention(page, "page_equals_cli_korean_attention", KO_PROMPT);
    await shootSteps(page, "explain-ko-", STEPS);

    // ---- a long prompt: pooled thumbnails, a head enlarged whole ----
    const LONG_PROMPT = "The fluffy blue creature roamed the verdant forest, and then it slept. ".repeat(12);
    await page.fill("#prompt", LONG_PROMPT);
    await page.click("#run");
    const states4 = await waitRun(page);
    const longIds = (await page.evaluate((prompt) => api("/inspect/tokens", { prompt }), LONG_PROMPT)).ids.length;
    const longHeads = await page.$$eval("#attn-grid canvas.head[data-loaded]", (cs) => cs.length);
    check("long_prompt_runs_with_thumbnails", Object.values(states4).every((s) => s === "done") &&
      longIds > 96 && longHeads === info.n_layer * info.n_head, `${longIds} tokens, ${longHeads} heads`);
    await page.click("#step-attention");
    await page.click(`canvas.head[data-layer="2"][data-head="1"]`);
    const bigN = await page.waitForSelector(`#head-big[data-layer="2"][data-head="1"] canvas`, { timeout: 20000 })
      .then(() => page.getAttribute("#head-big", "data-n")).catch(() => null);
    check("long_prompt_head_enlarged_whole", Number(bigN) === longIds && (await errors(page)).length === 0,
      `enlarged ${bigN} of ${longIds} tokens`);

    check("nothing_fetched_from_another_host", foreign.length === 0, foreign.join(", "));
    check("no_page_errors", pageErrors.length === 0, pageErrors.join("; "));
    console.log("screenshots: " + shots);
  } catch (e) {
    check("browser_run", false, e.stack || String(e));
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
