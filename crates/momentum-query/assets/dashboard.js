// The evaluators' dashboard: reads the query API with the evaluator's token
// and draws what it answers. `/` compares movements; `/movements/{id}` shows
// one. No build step: plain JS, uPlot (a global, loaded before this module).

const TOKEN_KEY = 'momentum-token';
const POLL_MS = 3000;
// Okabe–Ito: told apart with every common colour-vision deficiency.
const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000', '#F0E442'];
const DASHES = [[], [8, 4], [2, 3], [10, 3, 2, 3]];

const METRICS = [
  'active_participants', 'new_participants', 'returning_participants', 'retained_participants', 'retention_rate',
  'joined', 'meetings', 'attendances', 'volunteer_hours', 'volunteers', 'social_value_gbp', 'collective_actions',
  'action_participants', 'people_reached', 'organisers', 'citizen_led_share', 'partners', 'areas', 'momentum',
];
const RATIOS = new Set(['retention_rate', 'citizen_led_share', 'momentum']);
const KIND = { social_value_gbp: 'gbp', volunteer_hours: 'hours' };
const label = (metric) => (metric === 'social_value_gbp' ? 'social value (£)' : metric.replaceAll('_', ' '));
const kindOf = (metric) => (RATIOS.has(metric) ? 'ratio' : KIND[metric] || 'count');

// A movement's charts: each a heading, the trend metrics it draws, and the
// scale each sits on (a second scale gets the right-hand axis).
const TREND_CHARTS = [
  { id: 'momentum', title: 'Momentum', metrics: ['momentum'],
    about: 'Growth of distinct participation: people active in the last four periods against the four before.' },
  { id: 'participants', title: 'Active, new and returning participants',
    metrics: ['active_participants', 'new_participants', 'returning_participants'] },
  { id: 'volunteering', title: 'Volunteer hours and social value', metrics: ['volunteer_hours', 'social_value_gbp'],
    scales: { social_value_gbp: 'gbp' } },
  { id: 'activity', title: 'Meetings, actions and people reached',
    metrics: ['meetings', 'collective_actions', 'people_reached'], scales: { people_reached: 'reach' } },
  { id: 'organising', title: 'Organisers and citizen-led share', metrics: ['organisers', 'citizen_led_share'],
    scales: { citizen_led_share: 'share' } },
  { id: 'partnership', title: 'Partners and areas', metrics: ['partners', 'areas'] },
];
// The lifecycle chart: who came (new, retained, resurrecting: stacked above
// zero) and who went (dormant: below zero), as PostHog's and Amplitude's.
const LIFECYCLE = ['new_participants', 'retained_participants', 'resurrecting_participants', 'dormant_participants'];
const TREND_METRICS = [...TREND_CHARTS.flatMap((chart) => chart.metrics), ...LIFECYCLE];

const $ = (id) => document.getElementById(id);
const main = $('main');
const movement = location.pathname.match(/^\/movements\/([a-z0-9][a-z0-9-]{0,62})\/?$/)?.[1] ?? null;
const charts = new Map(); // panel id → uPlot
const sized = new WeakSet(); // figures whose width is followed
let shownWatermark = -1;
let generation = 0;
let loading = false;

// ---- the token -------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// `#token=…` signs in from a shared link; it leaves the address bar at once.
function takeTokenFromFragment() {
  const given = new URLSearchParams(location.hash.slice(1)).get('token');
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  if (location.hash) history.replaceState(history.state, '', location.pathname + location.search);
}

function askForToken(message) {
  main.dataset.state = 'token';
  $('token-message').textContent = message || '';
  $('token-form').hidden = false;
  $('dashboard').hidden = true;
  $('forget-token').hidden = true;
  $('token-input').focus();
}

$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
  $('token-input').value = '';
  start();
});

$('forget-token').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  askForToken('The token was forgotten.');
});

// ---- the API ---------------------------------------------------------------

class HttpError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, parameters = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(parameters)) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
  }
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token()}`, Accept: 'application/json' } });
  if (!response.ok) throw new HttpError(response.status, await response.json().catch(() => ({})));
  return response.json();
}

// ---- controls: interval, dates (and the compared metric), kept in the URL --

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

function readControls() {
  const query = new URLSearchParams(location.search);
  const today = new Date();
  const yearAgo = new Date(Date.UTC(today.getFullYear() - 1, today.getMonth(), today.getDate() + 1));
  $('interval').value = query.get('interval') === 'month' ? 'month' : 'week';
  $('to').value = query.get('to') || isoDate(new Date(Date.UTC(today.getFullYear(), today.getMonth(), today.getDate())));
  $('from').value = query.get('from') || isoDate(yearAgo);
  if (!movement) $('metric').value = METRICS.includes(query.get('metric')) ? query.get('metric') : 'active_participants';
  if (movement) {
    $('by').value = query.get('by') === 'partner' ? 'partner' : 'area';
    $('top').value = ['3', '5', '10'].includes(query.get('top')) ? query.get('top') : '5';
    $('as-of').value = /^\d{4}-\d{2}-\d{2}$/.test(query.get('as_of') || '') ? query.get('as_of') : '';
  }
}

function settings() {
  const chosen = { interval: $('interval').value, from: $('from').value, to: $('to').value };
  if (!movement) chosen.metric = $('metric').value;
  if (movement) {
    chosen.by = $('by').value;
    chosen.top = $('top').value;
    if ($('as-of').value) chosen.as_of = $('as-of').value;
  }
  return chosen;
}

// The moment a read "as it stood on" a date is as of: the end of that day
// (UTC), or now for today (the API refuses times to come).
function asOfTime(chosen) {
  if (!chosen.as_of) return undefined;
  const end = new Date(`${chosen.as_of}T23:59:59Z`);
  return (end > new Date() ? new Date() : end).toISOString();
}

function applyControls(event) {
  event?.preventDefault();
  if (!$('controls').reportValidity()) return;
  history.replaceState(history.state, '', `${location.pathname}?${new URLSearchParams(settings())}`);
  load();
}

$('controls').addEventListener('submit', applyControls);
for (const id of ['interval', 'from', 'to', 'metric', 'by', 'top', 'as-of']) $(id).addEventListener('change', applyControls);

// ---- numbers ----------------------------------------------------------------

const whole = new Intl.NumberFormat('en-GB');
const oneDecimal = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 1 });
const pounds = new Intl.NumberFormat('en-GB', { style: 'currency', currency: 'GBP' });
// Axis labels of money in whole pounds, so they fit beside the chart.
const wholePounds = new Intl.NumberFormat('en-GB', { style: 'currency', currency: 'GBP', maximumFractionDigits: 0 });
const percent = new Intl.NumberFormat('en-GB', { style: 'percent', maximumFractionDigits: 1 });

function show(value, kind) {
  if (value === null || value === undefined) return '—';
  if (kind === 'text') return String(value);
  if (kind === 'ratio') return percent.format(value);
  if (kind === 'gbp') return pounds.format(value);
  if (kind === 'hours') return oneDecimal.format(value);
  return whole.format(value);
}

function csvCell(value) {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

// ---- panels -----------------------------------------------------------------

// A panel: heading, note, the figure, a CSV download of exactly its numbers.
function panel(id, title, about) {
  let section = $(`panel-${id}`);
  if (!section) {
    section = document.createElement('section');
    section.className = 'panel';
    section.id = `panel-${id}`;
    section.setAttribute('aria-labelledby', `heading-${id}`);
    section.innerHTML = `<h2 id="heading-${id}"></h2><p class="about"></p><div class="figure"></div>
      <p class="download"><a download>Download CSV</a></p>`;
    $('panels').append(section);
  }
  section.querySelector('h2').textContent = title;
  section.querySelector('.about').textContent = about || '';
  section.querySelector('.about').hidden = !about;
  return section;
}

function offerCsv(section, rows, filename) {
  const link = section.querySelector('.download a');
  if (link.href) URL.revokeObjectURL(link.href);
  const text = rows.map((row) => row.map(csvCell).join(',')).join('\n') + '\n';
  link.href = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  link.download = filename;
  link.setAttribute('aria-label', `Download CSV: ${section.querySelector('h2').textContent}`);
}

function cell(tag, value, kind) {
  const element = document.createElement(tag);
  element.textContent = show(value, kind);
  if (tag === 'td') element.dataset.value = value === null || value === undefined ? '' : String(value);
  return element;
}

function table(caption, head, rows, keys = head) {
  const element = document.createElement('table');
  element.className = 'data';
  element.createCaption().textContent = caption;
  const headRow = element.createTHead().insertRow();
  for (const [index, name] of head.entries()) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = name;
    th.dataset.key = keys[index];
    headRow.append(th);
  }
  const body = element.createTBody();
  for (const row of rows) body.append(row);
  return element;
}

const seconds = (period) => Date.parse(`${period}T00:00:00Z`) / 1000;
const dayMonth = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
const monthYear = new Intl.DateTimeFormat('en-GB', { month: 'short', year: 'numeric', timeZone: 'UTC' });

// The x axis: a tick at the start of every period, or of every few when
// they would crowd at the chart's current width (it follows its panel).
function periodAxis(times, monthly) {
  return {
    splits: (u) => {
      const every = Math.max(1, Math.ceil(times.length / Math.max(1, Math.floor(u.width / 80))));
      return times.filter((time, index) => index % every === 0);
    },
    values: (u, ticks) => ticks.map((tick) => (monthly ? monthYear : dayMonth).format(new Date(tick * 1000))),
  };
}

// A time-series chart of `columns` ({key, label, kind, scale, values}) over
// `rows` (the API's rows: `period`, `label`, `complete`), with a data table
// of the same numbers and their CSV, which says as the API's does which
// periods are not over yet.
function seriesPanel({ id, title, about, rows: heads, columns, filename }) {
  const periods = heads.map((head) => head.period);
  const section = panel(id, title, about);
  const figure = section.querySelector('.figure');
  const tableWasOpen = figure.querySelector('details')?.open ?? false;
  charts.get(id)?.destroy();
  figure.replaceChildren();

  const plot = document.createElement('div');
  plot.className = 'plot';
  plot.setAttribute('role', 'img');
  plot.setAttribute('aria-label', `${title}: a chart; the data table below lists the same numbers.`);
  figure.append(plot);

  const rows = periods.map((period, index) => {
    const row = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = period;
    markIncomplete(row, heads[index]);
    row.append(th, ...columns.map((column) => cell('td', column.values[index], column.kind)));
    return row;
  });
  const details = document.createElement('details');
  details.innerHTML = '<summary>Data table</summary>';
  details.open = tableWasOpen;
  const keys = ['period', ...columns.map((column) => column.key)];
  details.append(table(title, ['period', ...columns.map((column) => column.label)], rows, keys));
  figure.append(details);
  offerCsv(section, [['period', 'label', 'complete', ...keys.slice(1)],
    ...heads.map((head, index) => [head.period, head.label, head.complete,
      ...columns.map((column) => column.values[index])])], filename);

  const scales = [...new Set(columns.map((column) => column.scale || 'y'))];
  const axisFor = (scale, side) => {
    const column = columns.find((candidate) => (candidate.scale || 'y') === scale);
    const tickLabel = (tick) => (column.kind === 'gbp' ? wholePounds.format(tick) : show(tick, column.kind));
    return { scale, side, grid: { show: side === 3 }, values: (u, ticks) => ticks.map(tickLabel),
      size: 70 };
  };
  const width = Math.max(280, figure.clientWidth - 8);
  const times = periods.map(seconds);
  const monthly = periods.length > 1 && times[1] - times[0] > 27 * 86400;
  const chart = new uPlot({
    width,
    height: 240,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    legend: { live: false },
    hooks: { drawClear: [(u) => hatchIncomplete(u, heads)] },
    scales: Object.fromEntries(scales.map((scale) => [scale, { auto: true }])),
    series: [
      { label: 'period', value: (u, ts) => (ts === null ? '' : isoDate(new Date(ts * 1000))) },
      ...columns.map((column, index) => ({
        label: column.label, scale: column.scale || 'y', width: 2,
        stroke: PALETTE[index % PALETTE.length], dash: DASHES[index % DASHES.length],
        points: { show: true, size: 5 }, value: (u, value) => show(value, column.kind),
      })),
    ],
    axes: [periodAxis(times, monthly), ...scales.map((scale, index) => axisFor(scale, index === 0 ? 3 : 1))],
  }, [times, ...columns.map((column) => column.values)], plot);
  charts.set(id, chart);
  plot.chart = chart; // so tests/browser can compare what is drawn with the table
  plot.dataset.incomplete = JSON.stringify(heads.filter((head) => head.complete === false).map((head) => head.period));
  followWidth(id, figure);
}

// The grid settles only once every panel is in: a chart drawn while its
// panel was alone in its row was measured too wide. One observer per figure
// follows its width, whichever chart the figure holds by then.
function followWidth(id, figure) {
  if (sized.has(figure)) return;
  sized.add(figure);
  new ResizeObserver(() => {
    const current = charts.get(id);
    if (current) fitChart(current, figure);
  }).observe(figure);
}

// A row of a period not over yet says so: its figures are still growing.
function markIncomplete(row, head) {
  if (head?.complete !== false) return;
  row.classList.add('incomplete');
  row.dataset.complete = 'false';
  row.title = `${head.label}: not over yet, its figures are still growing`;
}

// Periods not over yet are drawn over a hatched band, so that a
// half-finished week is never read as a fall.
let hatch = null;
function hatchIncomplete(u, heads) {
  const first = heads.find((head) => head.complete === false);
  if (!first) return;
  if (!hatch) {
    const tile = document.createElement('canvas');
    tile.width = tile.height = 8;
    const pen = tile.getContext('2d');
    pen.strokeStyle = 'rgba(0, 0, 0, 0.18)';
    pen.lineWidth = 2;
    pen.beginPath();
    pen.moveTo(0, 8);
    pen.lineTo(8, 0);
    pen.stroke();
    hatch = u.ctx.createPattern(tile, 'repeat');
  }
  const { left, top, width, height } = u.bbox;
  const start = Math.max(left, u.valToPos(seconds(first.period), 'x', true) - 4);
  u.ctx.save();
  u.ctx.fillStyle = hatch;
  u.ctx.fillRect(start, top, left + width - start, height);
  u.ctx.restore();
}

// Sizes a chart to its figure, when the figure's width has changed.
function fitChart(chart, figure) {
  const width = Math.max(280, figure.clientWidth - 8);
  if (Math.abs(chart.width - width) > 1) chart.setSize({ width, height: 240 });
}

function trendColumns(trend, metrics, scales = {}) {
  return metrics.map((metric) => ({
    key: metric, label: label(metric), kind: kindOf(metric), scale: scales[metric],
    values: trend.series.map((row) => row[metric] ?? null),
  }));
}

// ---- a movement's page ------------------------------------------------------

function headline(trend) {
  const known = trend.series.filter((row) => row.momentum !== null && row.momentum !== undefined);
  if (!known.length) return 'Momentum is not yet defined: nobody took part in the four periods before.';
  const last = known[known.length - 1];
  const before = known.length > 1 ? known[known.length - 2].momentum : null;
  const direction = before === null ? '' : last.momentum > before ? ', rising' : last.momentum < before ? ', falling' : ', level';
  return `Momentum ${show(last.momentum, 'ratio')} in the ${trend.interval} from ${last.period}${direction}. `
    + 'Growth of distinct participation: people active in the last four periods against the four before.';
}

function heatMap(cohorts, filename) {
  const section = panel('cohorts', 'Cohort retention',
    `Participants grouped by the ${cohorts.interval} they first took part, and how many of them took part in that `
    + `${cohorts.interval} (+0) and each one after. Darker cells: a larger share of the cohort.`);
  const width = Math.max(0, ...cohorts.cohorts.map((cohort) => cohort.active.length));
  const offsets = [...Array(width).keys()];
  const rows = cohorts.cohorts.map((cohort) => {
    const row = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = cohort.cohort;
    row.append(th, cell('td', cohort.size, 'count'));
    for (const offset of offsets) {
      const active = cohort.active[offset];
      const td = offset < cohort.active.length ? cell('td', active, 'count') : document.createElement('td');
      if (offset < cohort.active.length && active !== null && cohort.size) {
        const share = active / cohort.size;
        td.classList.add('heat');
        td.style.backgroundColor = `rgba(0, 114, 178, ${(0.08 + 0.92 * share).toFixed(3)})`;
        if (share > 0.5) td.classList.add('dark');
        td.title = `${show(share, 'ratio')} of the cohort`;
      }
      row.append(td);
    }
    return row;
  });
  const grid = table('Cohort retention: participants active in each period after their first',
    [`cohort (${cohorts.interval})`, 'size', ...offsets.map((offset) => `+${offset}`)], rows,
    ['cohort', 'size', ...offsets.map((offset) => `active_${offset}`)]);
  grid.classList.add('heatmap');
  const scroller = document.createElement('div');
  scroller.className = 'scroll';
  scroller.tabIndex = 0;
  scroller.setAttribute('aria-label', 'Cohort retention table');
  scroller.append(grid);
  section.querySelector('.figure').replaceChildren(scroller);
  offerCsv(section, [['cohort', 'size', ...offsets.map((offset) => `active_${offset}`)],
    ...cohorts.cohorts.map((cohort) => [cohort.cohort, cohort.size, ...offsets.map((offset) => cohort.active[offset])])],
  filename);
}

function principlesPanel(principles, filename) {
  const section = panel('principles', 'The eight principles',
    `Activities tagged with each principle from ${principles.from} to ${principles.to}, and their distinct participants.`);
  const most = (key) => Math.max(1, ...principles.principles.map((row) => row[key] ?? 0));
  const bar = (value, key, colour) => {
    const td = cell('td', value, 'count');
    const span = document.createElement('span');
    span.className = `bar ${colour}`;
    span.style.width = `${(70 * (value ?? 0)) / most(key)}%`;
    span.setAttribute('aria-hidden', 'true');
    td.prepend(span);
    return td;
  };
  const rows = principles.principles.map((row) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = label(row.principle);
    th.dataset.principle = row.principle;
    tr.append(th, bar(row.activities, 'activities', 'blue'), bar(row.participants, 'participants', 'orange'));
    return tr;
  });
  const grid = table('Activities and participants per principle', ['principle', 'activities', 'participants'], rows);
  grid.classList.add('principles');
  section.querySelector('.figure').replaceChildren(grid);
  offerCsv(section, [['principle', 'activities', 'participants'],
    ...principles.principles.map((row) => [row.principle, row.activities, row.participants])], filename);
}

// The lifecycle: new, retained and resurrecting stacked above zero, dormant below.
function lifecyclePanel(trend, filename) {
  const section = panel('lifecycle', 'Who came and who went',
    `Each ${trend.interval}'s participants: new, retained from the ${trend.interval} before, and resurrecting after `
    + `a gap, stacked above zero; below zero, those of the ${trend.interval} before who did not come (dormant).`);
  const figure = section.querySelector('.figure');
  const tableWasOpen = figure.querySelector('details')?.open ?? false;
  charts.get('lifecycle')?.destroy();
  figure.replaceChildren();
  const plot = document.createElement('div');
  plot.className = 'plot';
  plot.setAttribute('role', 'img');
  plot.setAttribute('aria-label', 'Who came and who went: a chart; the data table below lists the same numbers.');
  figure.append(plot);
  const value = (row, metric) => row[metric] ?? 0;
  const [fresh, retained, resurrecting, dormant] = LIFECYCLE;
  // Stacked by drawing each bar from zero to its running total, tallest first.
  const stacked = [
    trend.series.map((row) => value(row, fresh) + value(row, retained) + value(row, resurrecting)),
    trend.series.map((row) => value(row, fresh) + value(row, retained)),
    trend.series.map((row) => value(row, fresh)),
    trend.series.map((row) => -value(row, dormant)),
  ];
  const names = ['resurrecting', 'retained', 'new', 'dormant'];
  const colours = [PALETTE[2], PALETTE[0], PALETTE[1], PALETTE[5]];
  const times = trend.series.map((row) => seconds(row.period));
  const chart = new uPlot({
    width: Math.max(280, figure.clientWidth - 8),
    height: 240,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    legend: { live: false },
    hooks: { drawClear: [(u) => hatchIncomplete(u, trend.series)] },
    scales: { x: { time: true }, y: { auto: true } },
    series: [
      { label: 'period', value: (u, ts) => (ts === null ? '' : isoDate(new Date(ts * 1000))) },
      ...names.map((name, index) => ({
        label: name, fill: colours[index], stroke: colours[index], width: 0,
        paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false },
        value: (u, shown) => (shown === null ? '—' : whole.format(Math.abs(shown))),
      })),
    ],
    axes: [periodAxis(times, times.length > 1 && times[1] - times[0] > 27 * 86400),
      { values: (u, ticks) => ticks.map((tick) => whole.format(Math.abs(tick))), size: 60 }],
  }, [times, ...stacked], plot);
  charts.set('lifecycle', chart);
  plot.chart = chart;
  plot.dataset.incomplete = JSON.stringify(trend.series.filter((row) => row.complete === false).map((row) => row.period));
  const rows = trend.series.map((row) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = row.period;
    markIncomplete(tr, row);
    tr.append(th, ...LIFECYCLE.map((metric) => cell('td', row[metric], 'count')));
    return tr;
  });
  const details = document.createElement('details');
  details.innerHTML = '<summary>Data table</summary>';
  details.open = tableWasOpen;
  details.append(table('Who came and who went', ['period', ...LIFECYCLE.map(label)], rows, ['period', ...LIFECYCLE]));
  figure.append(details);
  offerCsv(section, [['period', 'label', 'complete', ...LIFECYCLE],
    ...trend.series.map((row) => [row.period, row.label, row.complete, ...LIFECYCLE.map((metric) => row[metric])])],
  filename);
  followWidth('lifecycle', figure);
}

// Active participants by area or partner: the top values of the range, the rest as (other).
function breakdownPanel(split, chosen, filename) {
  const by = chosen.by;
  const values = [...new Set(split.series.map((row) => row[by]))];
  const heads = split.series.filter((row, index, rows) => rows.findIndex((other) => other.period === row.period) === index);
  seriesPanel({
    id: 'breakdown', title: `Active participants by ${by}`,
    about: `The ${chosen.top} ${by === 'area' ? 'areas' : 'partners'} with the most events over the range, each `
      + `its own line; (other) merges the rest and (none) is events without one. A person active in two counts in both.`,
    rows: heads,
    columns: values.map((value) => ({
      key: value, label: value, kind: 'count',
      values: heads.map((head) => split.series.find((row) => row.period === head.period && row[by] === value)
        ?.active_participants ?? null),
    })),
    filename,
  });
}

// Of the window's participants: in how many of its periods they came, and how often.
function stickinessPanel(stickiness, filename) {
  const section = panel('stickiness', 'Stickiness',
    `Of the participants of the ${stickiness.window} ${stickiness.interval}s from ${stickiness.from}: how many came in `
    + `exactly 1, 2, … of them, and how many took part in exactly n activities.`);
  const most = Math.max(1, ...stickiness.periods_active.map((row) => row.participants ?? 0));
  const rows = stickiness.periods_active.map((row) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = String(row.periods);
    const td = cell('td', row.participants, 'count');
    const span = document.createElement('span');
    span.className = 'bar blue';
    span.style.width = `${(70 * (row.participants ?? 0)) / most}%`;
    span.setAttribute('aria-hidden', 'true');
    td.prepend(span);
    tr.append(th, td);
    return tr;
  });
  const grid = table(`Participants by the number of ${stickiness.interval}s they came in`,
    [`${stickiness.interval}s active`, 'participants'], rows, ['periods', 'participants']);
  grid.classList.add('principles');
  section.querySelector('.figure').replaceChildren(grid);
  offerCsv(section, [['measure', 'count', 'participants'],
    ...stickiness.periods_active.map((row) => ['periods_active', row.periods, row.participants]),
    ...stickiness.frequency.map((row) => ['activities', row.activities, row.participants])], filename);
}

// Each principle's behavioural evidence, with the numbers behind it.
function evidencePanel(principles, filename) {
  const section = panel('evidence', 'The principles, in what people did',
    'One or two indicators per principle, each with the numbers it is made of (docs/metrics.md gives the reasoning).');
  const kindOfIndicator = (indicator) => (indicator.endsWith('_share') || indicator === 'momentum' ? 'ratio'
    : indicator === 'attendances_per_meeting' ? 'hours' : 'count');
  const rows = principles.evidence.map((row) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = label(row.principle);
    th.dataset.principle = row.principle;
    tr.append(th, cell('td', row.indicator.replaceAll('_', ' '), 'text'), cell('td', row.value, kindOfIndicator(row.indicator)),
      cell('td', row.numerator, 'count'), cell('td', row.denominator, 'count'));
    tr.cells[1].dataset.value = row.indicator;
    return tr;
  });
  section.querySelector('.figure').replaceChildren(table('Evidence of each principle',
    ['principle', 'indicator', 'value', 'numerator', 'denominator'], rows));
  offerCsv(section, [['principle', 'indicator', 'value', 'numerator', 'denominator'],
    ...principles.evidence.map((row) => [row.principle, row.indicator, row.value, row.numerator, row.denominator])],
  filename);
}

// What moved since the figures as they stood on the date chosen.
function changesPanel(changes, chosen, filename) {
  const section = panel('changes', `What changed since ${chosen.as_of}`,
    `Every figure that differs now from what it was at the end of ${chosen.as_of} (stream sequence `
    + `${changes.since_seq}): late events, retractions and corrections. The charts above show the figures as they `
    + 'stood then.');
  const rows = changes.changes.map((change) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = change.period;
    tr.append(th, cell('td', change.metric, 'text'), cell('td', change.before, kindOf(change.metric)),
      cell('td', change.after, kindOf(change.metric)));
    tr.cells[1].dataset.value = change.metric;
    return tr;
  });
  const grid = table('Figures that changed', ['period', 'metric', 'before', 'after'], rows);
  section.querySelector('.figure').replaceChildren(rows.length ? grid : document.createTextNode('Nothing has changed.'));
  offerCsv(section, [['period', 'label', 'metric', 'before', 'after'],
    ...changes.changes.map((change) => [change.period, change.label, change.metric, change.before, change.after])],
  filename);
}

async function loadMovement(chosen, minSeq) {
  const path = `/v1/movements/${movement}`;
  const range = { interval: chosen.interval, from: chosen.from, to: chosen.to };
  const asOf = asOfTime(chosen);
  main.dataset.asOf = asOf ?? '';
  const [trend, cohorts, principles, split, stickiness] = await Promise.all([
    api(`${path}/trends`, { ...range, metrics: TREND_METRICS.join(','), as_of: asOf, min_seq: minSeq }),
    api(`${path}/cohorts`, { ...range, as_of: asOf, min_seq: minSeq }),
    api(`${path}/principles`, { from: chosen.from, to: chosen.to, as_of: asOf, min_seq: minSeq }),
    api(`${path}/trends`, { ...range, metrics: 'active_participants', by: chosen.by, top: chosen.top, as_of: asOf,
      min_seq: minSeq }),
    api(`${path}/stickiness`, { interval: chosen.interval, to: chosen.to, window: 12, as_of: asOf, min_seq: minSeq }),
  ]);
  const changes = asOf
    ? await api(`${path}/changes`, { ...range, since_seq: trend.watermark, min_seq: minSeq })
    : null;
  return () => {
    const name = `${chosen.interval}-${chosen.from}-to-${chosen.to}`;
    for (const chart of TREND_CHARTS) {
      seriesPanel({ id: chart.id, title: chart.title, about: chart.id === 'momentum' ? headline(trend) : chart.about,
        rows: trend.series, columns: trendColumns(trend, chart.metrics, chart.scales), filename: `${movement}-${chart.id}-${name}.csv` });
    }
    lifecyclePanel(trend, `${movement}-lifecycle-${name}.csv`);
    breakdownPanel(split, chosen, `${movement}-by-${chosen.by}-${name}.csv`);
    stickinessPanel(stickiness, `${movement}-stickiness-${chosen.interval}-to-${chosen.to}.csv`);
    heatMap(cohorts, `${movement}-cohorts-${name}.csv`);
    principlesPanel(principles, `${movement}-principles-${chosen.from}-to-${chosen.to}.csv`);
    evidencePanel(principles, `${movement}-evidence-${chosen.from}-to-${chosen.to}.csv`);
    if (changes) {
      changesPanel(changes, chosen, `${movement}-changes-since-${changes.since_seq}-${chosen.interval}.csv`);
    } else {
      $('panel-changes')?.remove();
    }
    const shown = [trend, cohorts, principles, split, stickiness].map((answer) => answer.watermark);
    // Figures as they stood stay put; the changes are what follows new events.
    return changes ? changes.watermark : Math.min(...shown);
  };
}

// ---- the overview -----------------------------------------------------------

async function loadOverview(chosen, minSeq, list) {
  const names = list.movements.map((summary) => summary.movement).slice(0, 20);
  const comparison = names.length
    ? await api('/v1/compare', { ...chosen, movements: names.join(','), min_seq: minSeq })
    : null;
  return () => {
    if (comparison) {
      seriesPanel({
        id: 'compare', title: `Compared: ${label(chosen.metric)}`,
        about: `${label(chosen.metric)} for each movement, by ${chosen.interval}, side by side.`,
        rows: comparison.series[0]?.values ?? [],
        columns: comparison.series.map((series) => ({
          key: series.movement, label: series.movement, kind: kindOf(chosen.metric),
          values: series.values.map((value) => value.value),
        })),
        filename: `compare-${chosen.metric}-${chosen.interval}-${chosen.from}-to-${chosen.to}.csv`,
      });
    }
    const section = panel('movements', 'Movements', 'Every movement this token may read, with its accepted events.');
    const range = new URLSearchParams({ interval: chosen.interval, from: chosen.from, to: chosen.to });
    const rows = list.movements.map((summary) => {
      const row = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      const link = document.createElement('a');
      link.href = `/movements/${summary.movement}?${range}`;
      link.textContent = summary.movement;
      th.append(link);
      row.append(th, cell('td', summary.events, 'count'));
      return row;
    });
    section.querySelector('.figure').replaceChildren(table('Movements', ['movement', 'events'], rows));
    offerCsv(section, [['movement', 'events'], ...list.movements.map((summary) => [summary.movement, summary.events])],
      'movements.csv');
    return comparison ? Math.min(list.watermark, comparison.watermark) : list.watermark;
  };
}

// ---- loading, errors and live updates ---------------------------------------

function showMovementLinks(list) {
  $('movement-links').replaceChildren(...list.movements.map((summary) => {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `/movements/${summary.movement}${location.search}`;
    link.textContent = summary.movement;
    if (summary.movement === movement) link.setAttribute('aria-current', 'page');
    item.append(link);
    return item;
  }));
}

function problem(error) {
  if (error.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken('That token was not accepted (401). Enter an evaluator token.');
    return;
  }
  main.dataset.state = error.status === 403 ? 'forbidden' : 'error';
  $('problem').hidden = false;
  $('problem').textContent = error.status === 403
    ? `This token does not cover ${movement ? `movement “${movement}”` : 'these movements'} (403 Forbidden).`
    : `The figures could not be read: ${error.message}`;
  if (error.status === 403 || error.status === 404) $('panels').hidden = true;
}

async function load(minSeq) {
  const mine = ++generation;
  loading = true;
  main.dataset.state = 'loading';
  const chosen = settings();
  try {
    const list = await api('/v1/movements', { min_seq: minSeq });
    const render = movement ? await loadMovement(chosen, minSeq) : await loadOverview(chosen, minSeq, list);
    if (mine !== generation) return;
    showMovementLinks(list);
    $('problem').hidden = true;
    $('panels').hidden = false;
    shownWatermark = render();
    main.dataset.watermark = String(shownWatermark);
    main.dataset.loads = String(Number(main.dataset.loads || 0) + 1);
    main.dataset.state = 'ready';
    $('status').textContent = `Figures include every event up to stream sequence ${shownWatermark}; `
      + `read at ${new Date().toLocaleTimeString('en-GB')}. They update as events arrive.`;
  } catch (error) {
    if (mine !== generation) return;
    problem(error instanceof HttpError ? error : { status: 0, message: `the query service did not answer (${error.message})` });
  } finally {
    if (mine === generation) loading = false;
  }
}

// Re-reads when the projector's watermark has passed what is shown.
async function poll() {
  if (!token() || loading || document.hidden || !['ready', 'error'].includes(main.dataset.state)) return;
  try {
    const status = await api('/v1/status');
    if (status.watermark > shownWatermark && !loading) await load(status.watermark);
  } catch (error) {
    if (error instanceof HttpError && error.status === 401) problem(error);
  }
}

function start() {
  if (!token()) {
    askForToken();
    return;
  }
  $('token-form').hidden = true;
  $('dashboard').hidden = false;
  $('forget-token').hidden = false;
  load();
}

function setUp() {
  if (!movement && location.pathname !== '/') {
    main.textContent = 'Not a movement id: use /movements/ and 1 to 63 lower-case letters, digits and hyphens.';
    main.dataset.state = 'error';
    return;
  }
  $('title').textContent = movement ? `Movement: ${movement}` : 'Movements side by side';
  document.title = movement ? `${movement} · momentum` : 'momentum dashboard';
  const metric = $('metric');
  metric.replaceChildren(...METRICS.map((name) => new Option(label(name), name)));
  $('metric-label').hidden = Boolean(movement);
  $('movement-controls').hidden = !movement;
  readControls();
  takeTokenFromFragment();
  setInterval(poll, POLL_MS);
  start();
}

setUp();
