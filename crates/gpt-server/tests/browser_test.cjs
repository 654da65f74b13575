// The page at `/` in headless Chromium, driven by playwright-core (run by
// scripts/browser_check.sh, which starts the server and sets NODE_PATH).
//
//   node browser_test.cjs BASE_URL SCREENSHOT.png
//
// Loads the page, sends a message, sees the reply stream in token by token, clicks a token and
// sees the probability bars, moves the temperature slider with the keyboard and sees the bars
// sharpen and flatten, draws an attention pattern, checks that nothing was fetched from another
// host, and saves a screenshot. Prints one line per check and `N passed, M failed`.

const { chromium } = require("playwright-core");

const [base, shot] = process.argv.slice(2);
let passed = 0, failed = 0;
function check(name, ok, detail) {
  if (ok) { passed++; console.log("ok   " + name); }
  else { failed++; console.log("FAIL " + name + (detail ? ": " + detail : "")); }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const foreign = [];
    page.on("request", (r) => { if (!r.url().startsWith(base)) foreign.push(r.url()); });
    const consoleErrors = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));

    await page.goto(base + "/");
    await page.waitForFunction(() => !document.getElementById("model").textContent.startsWith("loading"));
    check("page_loads_with_the_model_name", (await page.textContent("#model")).length > 10);

    await page.fill("#input", "Write two sentences about the sea.");
    await page.click("#send");
    // Streaming: tokens appear while the reply is still open.
    const partial = await page.waitForFunction(() => {
      const m = document.querySelector(".msg.assistant");
      const n = document.querySelectorAll(".msg.assistant .token").length;
      return m && m.dataset.streaming === "1" && n >= 2 ? n : false;
    }, null, { timeout: 60000 }).then((h) => h.jsonValue()).catch(() => 0);
    await page.waitForSelector(".msg.assistant[data-done]", { timeout: 120000 });
    const total = await page.locator(".msg.assistant .token").count();
    const reply = (await page.textContent(".msg.assistant .body")).trim();
    check("reply_streams_token_by_token", partial >= 2 && total > partial, `partial ${partial}, total ${total}`);
    check("reply_has_text", reply.length > 10, JSON.stringify(reply));
    check("no_error_shown", (await page.locator(".error").count()) === 0);

    // The least certain token: its bars move most with the temperature.
    const step = await page.$$eval(".msg.assistant .token", (ts) => {
      let best = 0, bestP = 2;
      ts.forEach((t, i) => { const p = parseFloat(t.title.slice(4)); if (p < bestP) { bestP = p; best = i; } });
      return best;
    });
    await page.locator(".msg.assistant .token").nth(step).click();
    const bars = async () => page.$$eval("#bars .bar", (bs) => bs.map((b) => parseFloat(b.dataset.p)));
    // What the eye sees: the drawn width of the top bar, in pixels.
    const topWidth = async () => page.$eval("#bars .bar .fill", (f) => f.getBoundingClientRect().width);
    const px1 = await topWidth();
    const at1 = await bars();
    check("probability_bars_shown", at1.length >= 2 && Math.abs(at1.reduce((a, b) => a + b, 0) - 1) < 1e-3,
      JSON.stringify(at1.slice(0, 5)));
    check("selected_token_is_highlighted", (await page.locator(".token.selected").count()) === 1);

    // T from 1.00 down to 0.30 (14 steps of 0.05), then up to 2.50.
    await page.focus("#temp");
    for (let i = 0; i < 14; i++) await page.keyboard.press("ArrowLeft");
    const cold = await bars();
    const coldT = await page.textContent("#temp-val");
    const pxCold = await topWidth();
    for (let i = 0; i < 44; i++) await page.keyboard.press("ArrowRight");
    const hot = await bars();
    const hotT = await page.textContent("#temp-val");
    check("slider_sharpens_the_distribution", coldT === "0.30" && cold[0] > at1[0] + 1e-4,
      `T ${coldT}: top ${cold[0]} vs ${at1[0]} at T = 1`);
    check("bars_are_drawn_and_grow_when_sharpened", px1 > 1 && pxCold > px1 + 1, `${px1}px -> ${pxCold}px`);
    check("slider_flattens_the_distribution", hotT === "2.50" && hot[0] < at1[0] - 1e-4,
      `T ${hotT}: top ${hot[0]} vs ${at1[0]} at T = 1`);
    // Leave it at a readable temperature for the screenshot.
    for (let i = 0; i < 30; i++) await page.keyboard.press("ArrowLeft");

    await page.selectOption("#layer", "5");
    await page.selectOption("#head", "2");
    await page.click("#show-attn");
    const n = await page.waitForFunction(() => Number(document.getElementById("attn").dataset.tokens || 0), null,
      { timeout: 60000 }).then((h) => h.jsonValue()).catch(() => 0);
    check("attention_pattern_drawn", n > 10, `${n} tokens`);
    await page.hover("#attn", { position: { x: 40, y: 60 } });
    check("attention_hover_shows_a_weight", /query \d+ .* key \d+ .*%/.test(await page.textContent("#attn-tip")));

    // A constrained answer: the bars strike out what the JSON grammar forbade.
    await page.selectOption("#constraint", "json_object");
    await page.fill("#input", "Describe a cat.");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".msg.assistant[data-done]").length === 2, null,
      { timeout: 120000 }).catch(() => null);
    const answers = page.locator(".msg.assistant");
    const last = answers.nth((await answers.count()) - 1);
    const json = (await last.locator(".body").textContent()).trim();
    check("constrained_reply_is_a_json_object_or_its_start", json.startsWith("{"), JSON.stringify(json));
    await last.locator(".token").first().click();
    const masked = await page.locator("#bars .bar.masked").count();
    const note = await page.textContent("#bars-note");
    check("bars_mark_what_the_constraint_removed", masked >= 1 && /constraint forbade/.test(note),
      `${masked} struck out; ${note}`);

    // A required tool call: the call is shown, and the bars strike out what its grammar forbade.
    await page.selectOption("#constraint", "tool");
    await page.fill("#input", "What is the weather in Paris?");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".msg.assistant[data-done]").length === 3, null,
      { timeout: 120000 }).catch(() => null);
    const call = (await page.locator(".tool-call").allTextContents()).join(" ");
    check("tool_call_is_shown", /^tool call: get_weather\(\{.*"city"/.test(call), JSON.stringify(call));
    const third = page.locator(".msg.assistant").nth(2);
    await third.locator(".token").nth(1).click();
    const struck = await page.locator("#bars .bar.masked").count();
    check("bars_mark_what_the_tool_grammar_removed", struck >= 1, `${struck} struck out`);

    check("nothing_fetched_from_another_host", foreign.length === 0, foreign.join(", "));
    check("no_script_errors", consoleErrors.length === 0, consoleErrors.join("; "));
    await page.screenshot({ path: shot, fullPage: true });
    console.log("screenshot: " + shot);
  } catch (e) {
    check("browser_run", false, e.stack || String(e));
  } finally {
    await browser.close();
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
