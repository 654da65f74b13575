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
// Saves SCREENSHOT_DIR/explain-<step>.png and explain-ko-<step>.png. Set API_KEY when the
// server wants one. Prints one line per check and `N passed, M failed`.

const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

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
    page.on("request", (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });
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

    // ---- temperature ----
    await page.click("#step-unembedding");
    const sum = (d) => d.p.reduce((a, b) => a + b, 0) + d.rest;
    const at1 = await probsAt(page, "1.00");
    await page.focus("#temp");
    for (let i = 0; i < 10; i++) await page.keyboard.press("ArrowLeft");
    const cold = await probsAt(page, "0.50");
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
    await page.click("#step-attention");
    await page.click(`canvas.head[data-layer="0"][data-head="0"]`);
    await shootSteps(page, "explain-ko-", STEPS);

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
