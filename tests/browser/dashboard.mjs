// Drives Debian's headless Chromium over the dashboard of a running query
// service and checks it against the API. Run by tests/dashboard.rs:
//
//   node dashboard.mjs <query-url> <evaluator-token> --admin-token T --from D --to D \
//     [--movement alpha] [--forbidden-movement beta] [--screenshots DIR] [--handshake DIR]
//
// With --handshake, it writes DIR/ready once the page shows its first figures
// and waits for DIR/posted ({"seq": N}, written after the test posted one more
// event), then checks the open page shows it without a reload. Exits non-zero
// on the first failed check.

import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'admin-token': { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    movement: { type: 'string', default: 'alpha' },
    'forbidden-movement': { type: 'string', default: 'beta' },
    screenshots: { type: 'string', default: 'target/dashboard-screenshots' },
    handshake: { type: 'string' },
    chromium: { type: 'string', default: process.env.MOMENTUM_CHROMIUM || '/usr/bin/chromium' },
  },
});
const [base, token] = positionals;
if (!base || !token || !options['admin-token'] || !options.from || !options.to) {
  console.error('usage: node dashboard.mjs <query-url> <token> --admin-token T --from YYYY-MM-DD --to YYYY-MM-DD');
  process.exit(2);
}
const { movement, from, to } = options;
const admin = options['admin-token'];

// The trend charts of a movement's page and the metrics each draws (as the page has them).
const TREND_CHARTS = {
  momentum: ['momentum'],
  participants: ['active_participants', 'new_participants', 'returning_participants'],
  volunteering: ['volunteer_hours', 'social_value_gbp'],
  activity: ['meetings', 'collective_actions', 'people_reached'],
  organising: ['organisers', 'citizen_led_share'],
  partnership: ['partners', 'areas'],
};

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const step = (text) => console.log(`· ${text}`);

async function api(route, parameters, bearer = token) {
  const url = new URL(route, base);
  for (const [name, value] of Object.entries(parameters)) if (value !== undefined) url.searchParams.set(name, value);
  const response = await fetch(url, { headers: { authorization: `Bearer ${bearer}` } });
  const text = await response.text();
  check(response.ok, `${url} answered ${response.status}: ${text}`);
  return url.searchParams.get('format') === 'csv' ? text : JSON.parse(text);
}

// A panel's data table as {keys, rows}: row headers as text (a principle's id),
// other cells as the raw value the page charted ('' for null).
function readTable(page, id) {
  return page.evaluate((id) => {
    const table = document.querySelector(`#panel-${id} table.data`);
    if (!table) return null;
    const keys = [...table.tHead.rows[0].cells].map((cell) => cell.dataset.key);
    const rows = [...table.tBodies[0].rows].map((row) => [...row.cells].map((cell) =>
      cell.tagName === 'TH' ? cell.dataset.principle || cell.textContent : cell.dataset.value ?? ''));
    return { keys, rows };
  }, id);
}

// A shown cell against the API's value: '' is null, else the same number.
function same(shown, expected) {
  if (expected === null || expected === undefined) return shown === '';
  if (typeof expected === 'number') return shown !== '' && Number(shown) === expected;
  return shown === String(expected);
}

function compareRows(what, shown, expectedKeys, expectedRows) {
  check(shown, `${what}: no data table on the page`);
  check(JSON.stringify(shown.keys) === JSON.stringify(expectedKeys),
    `${what}: columns ${JSON.stringify(shown.keys)}, expected ${JSON.stringify(expectedKeys)}`);
  check(shown.rows.length === expectedRows.length,
    `${what}: ${shown.rows.length} rows shown, the API has ${expectedRows.length}`);
  expectedRows.forEach((expected, index) => {
    expected.forEach((value, column) => {
      check(same(shown.rows[index][column], value),
        `${what}: row ${index} ${expectedKeys[column]} shows ${JSON.stringify(shown.rows[index][column])}, the API says ${JSON.stringify(value)}`);
    });
  });
}

// The lifecycle metrics the page stacks, and the breakdown it shows by default.
const LIFECYCLE = ['new_participants', 'retained_participants', 'resurrecting_participants', 'dormant_participants'];
const BREAKDOWN = { by: 'area', top: '5' };

// Every chart of the movement's page against the API's JSON for the same
// parameters (`asOf`: the figures as they stood at that time).
async function checkMovementPage(page, interval, minSeq, asOf) {
  const parameters = { interval, from, to, min_seq: minSeq, as_of: asOf };
  const trend = await api(`/v1/movements/${movement}/trends`, parameters);
  const cohorts = await api(`/v1/movements/${movement}/cohorts`, parameters);
  const principles = await api(`/v1/movements/${movement}/principles`, { from, to, min_seq: minSeq, as_of: asOf });
  for (const [id, metrics] of Object.entries(TREND_CHARTS)) {
    compareRows(`${interval} ${id}`, await readTable(page, id), ['period', ...metrics],
      trend.series.map((row) => [row.period, ...metrics.map((metric) => row[metric])]));
    const canvas = await page.$(`#panel-${id} canvas`);
    check(canvas && (await canvas.boundingBox()).width > 200, `${id}: no chart drawn`);
    const drawn = await page.evaluate((id) => document.querySelector(`#panel-${id} .plot`).chart.data.slice(1), id);
    metrics.forEach((metric, index) => check(
      JSON.stringify(drawn[index]) === JSON.stringify(trend.series.map((row) => row[metric])),
      `${interval} ${id}: the chart draws ${JSON.stringify(drawn[index])} for ${metric}`));
  }
  const width = Math.max(0, ...cohorts.cohorts.map((cohort) => cohort.active.length));
  const offsets = [...Array(width).keys()];
  compareRows(`${interval} cohorts`, await readTable(page, 'cohorts'),
    ['cohort', 'size', ...offsets.map((offset) => `active_${offset}`)],
    cohorts.cohorts.map((cohort) => [cohort.cohort, cohort.size, ...offsets.map((offset) => cohort.active[offset])]));
  compareRows('principles', await readTable(page, 'principles'), ['principle', 'activities', 'participants'],
    principles.principles.map((row) => [row.principle, row.activities, row.participants]));

  // Who came and who went: the table as the API says, the bars stacked from it.
  compareRows(`${interval} lifecycle`, await readTable(page, 'lifecycle'), ['period', ...LIFECYCLE],
    trend.series.map((row) => [row.period, ...LIFECYCLE.map((metric) => row[metric])]));
  const stacked = await page.evaluate(() => document.querySelector('#panel-lifecycle .plot').chart.data.slice(1));
  const value = (row, metric) => row[metric] ?? 0;
  check(JSON.stringify(stacked[0]) === JSON.stringify(trend.series.map((row) =>
    value(row, LIFECYCLE[0]) + value(row, LIFECYCLE[1]) + value(row, LIFECYCLE[2]))), 'the came bars stack new, retained, resurrecting');
  check(JSON.stringify(stacked[3]) === JSON.stringify(trend.series.map((row) => -value(row, LIFECYCLE[3]))),
    'the dormant bars go below zero');

  // The breakdown: one column per value the API kept.
  const split = await api(`/v1/movements/${movement}/trends`,
    { ...parameters, metrics: 'active_participants', ...BREAKDOWN });
  const values = [...new Set(split.series.map((row) => row.area))];
  const periods = [...new Set(split.series.map((row) => row.period))];
  check(values.length > 1, `the test data has areas to break down: ${JSON.stringify(values)}`);
  compareRows(`${interval} breakdown`, await readTable(page, 'breakdown'), ['period', ...values],
    periods.map((period) => [period, ...values.map((area) =>
      split.series.find((row) => row.period === period && row.area === area).active_participants)]));

  const stickiness = await api(`/v1/movements/${movement}/stickiness`,
    { interval, to, window: 12, min_seq: minSeq, as_of: asOf });
  compareRows(`${interval} stickiness`, await readTable(page, 'stickiness'), ['periods', 'participants'],
    stickiness.periods_active.map((row) => [String(row.periods), row.participants]));
  compareRows('evidence', await readTable(page, 'evidence'),
    ['principle', 'indicator', 'value', 'numerator', 'denominator'],
    principles.evidence.map((row) => [row.principle, row.indicator, row.value, row.numerator, row.denominator]));
  return trend;
}

const watch = (page, errors) => {
  page.on('console', (message) => message.type() === 'error' && errors.push(`console: ${message.text()}`));
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()}`));
};

const ready = (page) => page.waitForFunction(() => document.querySelector('#main').dataset.state === 'ready');
const loads = (page) => page.evaluate(() => Number(document.querySelector('#main').dataset.loads || 0));
const sum = (trend, metric) => trend.series.reduce((total, row) => total + (row[metric] ?? 0), 0);

async function waitForFile(file, seconds) {
  for (let waited = 0; waited < seconds * 10; waited++) {
    try {
      return await fs.readFile(file, 'utf8');
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`${file} did not appear within ${seconds} s`);
}

const browser = await chromium.launch({ executablePath: options.chromium, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
try {
  await fs.mkdir(options.screenshots, { recursive: true });
  const viewport = { width: 1280, height: 900 };

  // 1. The token prompt, then the movement's figures, equal to the API's.
  step(`movement page of ${movement} with the token prompt`);
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  watch(page, errors);
  await page.goto(`${base}/movements/${movement}?interval=week&from=${from}&to=${to}`);
  await page.waitForSelector('#token-form:not([hidden])');
  check((await page.locator('#token-input').count()) === 1, 'a labelled token field');
  check((await page.getByLabel('Token').count()) === 1, 'the token field has its label');
  await page.fill('#token-input', token);
  await page.keyboard.press('Enter');
  await ready(page);
  await page.waitForSelector('#panel-participants canvas');
  check((await page.evaluate(() => sessionStorage.getItem('momentum-token'))) === token, 'the token is in sessionStorage');
  check((await page.evaluate(() => localStorage.length)) === 0, 'nothing in localStorage');
  const weekly = await checkMovementPage(page, 'week');
  check(sum(weekly, 'meetings') > 0, 'the test data has meetings');
  step(`weekly figures equal the API's (${weekly.series.length} weeks)`);
  await page.screenshot({ path: path.join(options.screenshots, `${movement}.png`), fullPage: true });

  // 2. The CSV download of a chart holds exactly its numbers.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('#panel-participants .download a'),
  ]);
  const csv = (await fs.readFile(await download.path(), 'utf8')).trim().split('\n').map((line) => line.split(','));
  const apiCsv = (await api(`/v1/movements/${movement}/trends`, {
    interval: 'week', from, to, metrics: TREND_CHARTS.participants.join(','), format: 'csv',
  })).trim().split('\n').map((line) => line.split(','));
  check(download.suggestedFilename() === `${movement}-participants-week-${from}-to-${to}.csv`,
    `download named ${download.suggestedFilename()}`);
  compareRows('participants CSV', { keys: csv[0], rows: csv.slice(1) }, apiCsv[0],
    // The period, its label and whether it is over are text; the rest numbers.
    apiCsv.slice(1).map((row) => row.map((cell, index) => (index < 3 ? cell : cell === '' ? null : Number(cell)))));
  step('the participants CSV equals the API\'s CSV');

  // 3. A control change: week → month.
  const before = await loads(page);
  await page.selectOption('#interval', 'month');
  await page.waitForFunction((before) => {
    const main = document.querySelector('#main');
    return main.dataset.state === 'ready' && Number(main.dataset.loads) > before;
  }, before);
  check(page.url().includes('interval=month'), `the URL keeps the interval: ${page.url()}`);
  const monthly = await checkMovementPage(page, 'month');
  check(monthly.series.length < weekly.series.length, 'fewer months than weeks');
  step(`monthly figures equal the API's (${monthly.series.length} months)`);

  // As it stood at the end of today: every event so far, and nothing changed since.
  const today = new Date().toISOString().slice(0, 10);
  let reloaded = await loads(page);
  await page.fill('#as-of', today);
  await page.dispatchEvent('#as-of', 'change');
  await page.waitForFunction((before) => {
    const main = document.querySelector('#main');
    return main.dataset.state === 'ready' && Number(main.dataset.loads) > before;
  }, reloaded);
  check(page.url().includes(`as_of=${today}`), `the URL keeps the date: ${page.url()}`);
  const asOf = await page.evaluate(() => document.querySelector('#main').dataset.asOf);
  check(asOf.startsWith(today), `the page reads as of today: ${asOf}`);
  const stood = await checkMovementPage(page, 'month', undefined, asOf);
  const changes = await api(`/v1/movements/${movement}/changes`, { interval: 'month', from, to, since_seq: stood.watermark });
  compareRows('changes', await readTable(page, 'changes') ?? { keys: ['period', 'metric', 'before', 'after'], rows: [] },
    ['period', 'metric', 'before', 'after'],
    changes.changes.map((change) => [change.period, change.metric, change.before, change.after]));
  step(`the figures as they stood on ${today} equal the API's, with ${changes.changes.length} changes since`);
  reloaded = await loads(page);
  await page.fill('#as-of', '');
  await page.dispatchEvent('#as-of', 'change');
  await page.waitForFunction((before) => {
    const main = document.querySelector('#main');
    return main.dataset.state === 'ready' && Number(main.dataset.loads) > before;
  }, reloaded);
  check((await page.$('#panel-changes')) === null, 'no changes panel without a date');

  // 4. An event posted now appears without a reload.
  if (options.handshake) {
    await page.evaluate(() => { window.stillTheSamePage = true; });
    await page.click('#panel-participants summary');
    await fs.writeFile(path.join(options.handshake, 'ready'), 'ready\n');
    const { seq } = JSON.parse(await waitForFile(path.join(options.handshake, 'posted'), 60));
    await page.waitForFunction((seq) => {
      const main = document.querySelector('#main');
      return main.dataset.state === 'ready' && Number(main.dataset.watermark) >= seq;
    }, seq, { timeout: 30_000 });
    check(await page.evaluate(() => window.stillTheSamePage === true), 'the page was not reloaded');
    check(await page.evaluate(() => document.querySelector('#panel-participants details').open),
      'an open data table stays open when the figures update');
    const updated = await checkMovementPage(page, 'month', seq);
    check(sum(updated, 'meetings') === sum(monthly, 'meetings') + 1, 'the new meeting is counted');
    step(`the event at sequence ${seq} appeared without a reload`);
  }
  // A range that ends today: its last period is not over, and drawn so.
  const recentFrom = new Date(Date.now() - 60 * 86400_000).toISOString().slice(0, 10);
  await page.goto(`${base}/movements/${movement}?interval=week&from=${recentFrom}&to=${today}`);
  await ready(page);
  const recent = await api(`/v1/movements/${movement}/trends`, { interval: 'week', from: recentFrom, to: today });
  const open = recent.series.filter((row) => row.complete === false).map((row) => row.period);
  check(open.length === 1, `the week of today is not complete: ${JSON.stringify(open)}`);
  for (const id of ['participants', 'lifecycle']) {
    const drawn = await page.evaluate((id) => document.querySelector(`#panel-${id} .plot`).dataset.incomplete, id);
    check(drawn === JSON.stringify(open), `${id} hatches ${drawn}, the API says ${JSON.stringify(open)}`);
  }
  const marked = await page.evaluate(() =>
    [...document.querySelectorAll('#panel-participants tr[data-complete="false"] th')].map((th) => th.textContent));
  check(JSON.stringify(marked) === JSON.stringify(open), `the table marks ${JSON.stringify(marked)} as not over`);
  step(`the week not over yet (${open[0]}) is hatched in the charts and marked in the tables`);
  check(errors.length === 0, `no console errors on the movement page:\n${errors.join('\n')}`);
  await context.close();

  // 5. A #token= link to the overview: signs in, and the token leaves the address bar.
  step('overview from a #token= link');
  const shared = await browser.newContext({ viewport });
  const overview = await shared.newPage();
  const overviewErrors = [];
  watch(overview, overviewErrors);
  await overview.goto(`${base}/?interval=week&from=${from}&to=${to}#token=${encodeURIComponent(admin)}`);
  await ready(overview);
  await overview.waitForSelector('#panel-compare canvas');
  check(!overview.url().includes('token') && !overview.url().includes('#'), `the token left the URL: ${overview.url()}`);
  check((await overview.evaluate(() => sessionStorage.getItem('momentum-token'))) === admin, 'the link\'s token is kept');
  const list = await api('/v1/movements', {}, admin);
  const names = list.movements.map((summary) => summary.movement);
  check(names.length >= 2, 'at least two movements to compare');
  const comparison = await api('/v1/compare',
    { movements: names.join(','), metric: 'active_participants', interval: 'week', from, to }, admin);
  compareRows('comparison', await readTable(overview, 'compare'), ['period', ...names],
    comparison.series[0].values.map((value, index) =>
      [value.period, ...comparison.series.map((series) => series.values[index].value)]));
  compareRows('movement list', await readTable(overview, 'movements'), ['movement', 'events'],
    list.movements.map((summary) => [summary.movement, summary.events]));
  step(`the comparison of ${names.join(', ')} equals the API's`);
  await overview.screenshot({ path: path.join(options.screenshots, 'overview.png'), fullPage: true });
  check(overviewErrors.length === 0, `no console errors on the overview:\n${overviewErrors.join('\n')}`);
  await shared.close();

  // 6. A wrong token brings the prompt back (401); a movement outside the token's scope says so (403).
  step('401 and 403');
  const refused = await browser.newContext({ viewport });
  const other = await refused.newPage();
  await other.goto(`${base}/movements/${movement}#token=not-a-token`);
  await other.waitForFunction(() => document.querySelector('#main').dataset.state === 'token');
  check((await other.textContent('#token-message')).includes('401'), 'the prompt says the token was refused');
  check((await other.evaluate(() => sessionStorage.getItem('momentum-token'))) === null, 'a refused token is dropped');
  await other.fill('#token-input', token);
  await other.click('#token-form button[type=submit]');
  await ready(other);
  await other.goto(`${base}/movements/${options['forbidden-movement']}?from=${from}&to=${to}`);
  await other.waitForFunction(() => document.querySelector('#main').dataset.state === 'forbidden');
  check((await other.textContent('#problem')).includes('does not cover'), 'the page says the token does not cover it');
  await refused.close();
  console.log('dashboard: every check passed');
} finally {
  await browser.close();
}
