// The page of `imram serve` in a real headless browser: search, results, explain with K step
// maps, and photos added by `index add --images` (thumbnails, boxes on a picture that is not
// square). Usage: node page_test.mjs IMRAM_BINARY ARTIFACT_DIR [chromium|firefox]
// Chromium through the DevTools protocol, Firefox through WebDriver BiDi (both puppeteer-core).
// Exits 77 (CTest's "skipped") only when the browser itself cannot start here.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const [imram, artifacts, browserName = 'chromium'] = process.argv.slice(2);
if (!imram || !artifacts || !['chromium', 'firefox'].includes(browserName)) {
  console.error('usage: node page_test.mjs IMRAM_BINARY ARTIFACT_DIR [chromium|firefox]');
  process.exit(2);
}
const require = createRequire(import.meta.url);
let puppeteer;
try {
  puppeteer = require('puppeteer-core');
} catch (e) {
  console.error('page test: puppeteer-core is not installed in tests/browser (run ./run setup)');
  process.exit(1);
}
const executable = browserName === 'firefox' ? (process.env.IMRAM_FIREFOX || '/usr/bin/firefox-esr')
                                              : (process.env.IMRAM_CHROMIUM || '/usr/bin/chromium');
const screenshot = join(artifacts, `serve-explain-${browserName}.png`);
const K = 2;
const work = mkdtempSync(join(tmpdir(), 'imram_page_'));
mkdirSync(artifacts, { recursive: true });
const run = (...args) => execFileSync(imram, ['--threads', '1', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
// The grid fixture backbone: 256 features for each of 6 x 6 regions, at any input size.
const backbone = join(dirname(fileURLToPath(import.meta.url)), '..', 'testdata', 'backbones', 'grid_d256_g6.pt');

const servers = [];
let browser;
function fail(message) {
  console.error('page test: FAILED: ' + message);
  process.exitCode = 1;
}

// `imram serve ARGS` on a free port; resolves to the port.
function startServer(args) {
  const server = spawn(imram, ['--threads', '1', 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(server);
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error('the server did not start: ' + output)), 60000);
    server.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(output);
      if (match) { clearTimeout(timer); resolve(Number(match[1])); }
    });
    server.on('exit', (code) => reject(new Error('the server exited with ' + code + ': ' + output)));
  });
}

// A 24-bit BMP, width x height: its left half `rgb`, its right half white.
function bmp(width, height, rgb) {
  const row = Math.ceil((width * 3) / 4) * 4, bytes = Buffer.alloc(54 + row * height);
  bytes.write('BM', 0);
  bytes.writeUInt32LE(bytes.length, 2);
  bytes.writeUInt32LE(54, 10);
  bytes.writeUInt32LE(40, 14);
  bytes.writeInt32LE(width, 18);
  bytes.writeInt32LE(height, 22);
  bytes.writeUInt16LE(1, 26);
  bytes.writeUInt16LE(24, 28);
  bytes.writeUInt32LE(row * height, 34);
  for (let y = 0; y < height; ++y)
    for (let x = 0; x < width; ++x) {
      const [r, g, b] = x < width / 2 ? rgb : [255, 255, 255], at = 54 + y * row + x * 3;
      bytes[at] = b; bytes[at + 1] = g; bytes[at + 2] = r;
    }
  return bytes;
}

try {
  // A world and a model just big enough to have pictures, words and K steps; its regions are
  // those of the grid backbone (36 of 256 features), so that photos can join its index.
  run('synth', '--out', join(work, 'data'), '--train', '64', '--dev', '4', '--test', '12', '--regions', '36', '--feat-dim', '256');
  run('train', '--data', join(work, 'data'), '--out', join(work, 'run'), '--mode', 'full', '--steps', String(K),
      '--embed-size', '16', '--word-dim', '16', '--batch-size', '16', '--max-steps', '3', '--val-split', 'none', '--quiet');

  const port = await startServer(['--cache', '', '--model', join(work, 'run', 'last'), '--data', join(work, 'data'), '--split', 'test']);

  try {
    browser = await puppeteer.launch(browserName === 'firefox' ? {
      browser: 'firefox',
      executablePath: executable,
      headless: true,
      userDataDir: join(work, 'profile'),
    } : {
      executablePath: executable,
      headless: true,
      userDataDir: join(work, 'profile'),
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  } catch (e) {
    console.error(`page test: SKIPPED: ${browserName} (${executable}) cannot start here: ` + e.message.split('\n')[0]);
    process.exitCode = 77;
  }
  if (browser) {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.setViewport({ width: 1200, height: 1000 });
    await page.goto(`http://127.0.0.1:${port}/`, { waitUntil: 'networkidle0' });

    // The header describes the gallery from /api/info, every field present.
    const header = await page.$eval('#info', (e) => e.textContent);
    if (!header.startsWith('gallery test: 12 images, 60 captions; full-IMRAM, K = 2') || /undefined|NaN/.test(header))
      fail('the header misreads /api/info: ' + header);

    // An empty search is refused on the page, not sent.
    await page.click('#search-button');
    const emptyError = await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));
    if (!emptyError) fail('an empty search shows no error');

    await page.type('#query', 'a large red circle');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#results .hit img', { timeout: 30000 });
    const hits = await page.$$eval('#results .hit', (cards) => cards.length);
    if (hits !== 12) fail(`expected 12 results (the top default, all 12 test images), got ${hits}`);
    const ranks = await page.$$eval('#results .hit .meta strong', (s) => s.map((e) => e.textContent));
    if (ranks[0] !== '#1' || ranks[1] !== '#2') fail('results are not ranked: ' + ranks.slice(0, 3));
    // Every result shows its picture (the server's drawing of the scene): all of them load.
    const allLoaded = () => {
      const images = [...document.querySelectorAll('#results .hit img')];
      return images.length > 0 && images.every((i) => i.complete);
    };
    await page.waitForFunction(allLoaded, { timeout: 30000 });
    const pictures = await page.$$eval('#results .hit img', (images) => images.filter((i) => i.complete && i.naturalWidth > 0).length);
    if (pictures !== hits) fail(`${hits} results, but ${pictures} of their pictures loaded`);

    // Every box outline and text the step maps draw, in canvas pixels: a text drawn after an
    // outline is the weight of that box.
    await page.evaluate(() => {
      window.drawnOnMaps = [];
      const proto = CanvasRenderingContext2D.prototype, strokeRect = proto.strokeRect, fillText = proto.fillText;
      proto.strokeRect = function (x, y, w, h) {
        window.drawnOnMaps.push({ box: [x, y, w, h] });
        return strokeRect.call(this, x, y, w, h);
      };
      proto.fillText = function (text, x, y, ...rest) {
        const m = this.measureText(text);
        window.drawnOnMaps.push({ text, rect: [x, y - m.actualBoundingBoxAscent, m.width,
                                               m.actualBoundingBoxAscent + m.actualBoundingBoxDescent] });
        return fillText.call(this, text, x, y, ...rest);
      };
    });
    await page.click('#results .hit');
    await page.waitForFunction(() => document.querySelectorAll('canvas[data-drawn="1"]').length > 0, { timeout: 30000 });
    // Issue 21 item 12: a weight written inside its box covered the small shape it labels.
    const labels = await page.evaluate(() => {
      let box = null, checked = 0;
      const covering = [];
      for (const drawn of window.drawnOnMaps) {
        if (drawn.box) { box = drawn.box; continue; }
        if (!box) continue;
        const [tx, ty, tw, th] = drawn.rect, [bx, by, bw, bh] = box;
        ++checked;
        if (tx < bx + bw && tx + tw > bx && ty < by + bh && ty + th > by) covering.push(`"${drawn.text}" over box ${box}`);
      }
      return { checked, covering };
    });
    if (labels.checked === 0) fail('no weight labels drawn on the step maps');
    if (labels.covering.length) fail('weight labels cover the boxes they label: ' + labels.covering.slice(0, 3).join('; '));
    const maps = await page.$$eval('canvas[data-drawn="1"]', (c) => c.map((e) => `${e.dataset.direction}:${e.dataset.step}`));
    for (const direction of ['text', 'image'])
      for (let k = 1; k <= K; ++k)
        if (!maps.includes(`${direction}:${k}`)) fail(`no ${direction} step ${k} map drawn (drawn: ${maps})`);

    // Choosing another word redraws the maps for it.
    const before = await page.$eval('.token.selected', (e) => e.textContent);
    const tokens = await page.$$('.token');
    await tokens[tokens.length - 2].hover();
    const after = await page.$eval('.token.selected', (e) => e.textContent);
    if (after === before) fail('hovering a word does not select it');

    // Shaded pixels: a step map is not just the picture.
    const shaded = await page.$eval('canvas[data-drawn="1"]', (canvas) => {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let orange = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] > 150 && data[i + 1] > 80 && data[i + 2] < 90) ++orange;
      return orange;
    });
    if (shaded === 0) fail('no region is shaded on the step map');

    // Issue 21 item 12. A region's attention to one word does not sum over regions: no
    // "background" share in the image direction.
    const numbers = await page.$$eval('figure.step', (figures) =>
      figures.map((f) => [f.querySelector('canvas').dataset.direction, f.textContent]));
    if (!numbers.some(([d, t]) => d === 'text' && t.includes('background'))) fail('no background share in the text direction');
    if (numbers.some(([d, t]) => d === 'image' && t.includes('background'))) fail('a background share in the image direction');
    await page.screenshot({ path: screenshot, fullPage: true });
    // Cards of different text lengths start their pictures at the same height.
    await page.click('#close-explain');
    const offsets = await page.$$eval('#results .hit', (cards) => cards.map((c) =>
      Math.round(c.querySelector('img').getBoundingClientRect().top - c.getBoundingClientRect().top)));
    if (new Set(offsets).size !== 1) fail('result pictures start at different heights in their cards: ' + offsets);
    // Captions by image: only the rank is bold; an error clears the previous answer.
    await page.click('input[name=mode][value=image]');
    await page.type('#query', '3');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#results.captions .hit', { timeout: 30000 });
    const bold = await page.$eval('#results .hit .meta strong', (e) => e.textContent);
    if (bold !== '#1') fail('more than the rank is bold in a caption row: ' + bold);
    await page.$eval('#query', (e) => { e.value = ''; });
    await page.type('#query', '99999');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => !document.getElementById('error').hidden, { timeout: 30000 });
    const left = await page.$$eval('#results > *', (children) => children.length);
    if (left) fail(`after an error ${left} elements of the previous answer stay on the page`);

    // Photos (2:1, as few are square) added to an index: the grid shows their thumbnails, and the
    // explain view draws each on a step map of its shape, with the grid's boxes on its pixels.
    mkdirSync(join(work, 'photos'));
    [[200, 30, 30], [30, 60, 200], [30, 160, 60]].forEach((rgb, k) => writeFileSync(join(work, 'photos', `photo${k}.bmp`), bmp(192, 96, rgb)));
    run('index', 'build', '--quiet', '--model', join(work, 'run', 'last'), '--data', join(work, 'data'), '--split', 'test',
        '--out', join(work, 'index'));
    run('index', 'add', join(work, 'index'), '--quiet', '--images', join(work, 'photos'), '--backbone', backbone, '--size', '64');
    const photoPort = await startServer(['--index', join(work, 'index'), '--shortlist', '0']);
    await page.goto(`http://127.0.0.1:${photoPort}/`, { waitUntil: 'networkidle0' });
    await page.$eval('#top', (e) => { e.value = '15'; });
    await page.type('#query', 'a large red circle');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#results .hit[data-image="12"] img', { timeout: 30000 });
    await page.waitForFunction(() => [12, 13, 14].every((i) => {
      const img = document.querySelector(`#results .hit[data-image="${i}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }), { timeout: 30000 });
    const thumbnails = await page.$$eval('#results .hit img', (images) => images
      .filter((i) => Number(i.closest('.hit').dataset.image) >= 12).map((i) => [i.naturalWidth, i.naturalHeight]));
    if (thumbnails.length !== 3 || thumbnails.some(([w, h]) => w !== 192 || h !== 96))
      fail('the photos are not shown as their 192 x 96 thumbnails: ' + JSON.stringify(thumbnails));
    await page.evaluate(() => {
      window.drawnOnMaps = [];
      const proto = CanvasRenderingContext2D.prototype, drawImage = proto.drawImage;
      proto.drawImage = function (source, ...rest) {
        window.drawnOnMaps.push({ image: source.src || '', args: rest, canvas: [this.canvas.width, this.canvas.height] });
        return drawImage.call(this, source, ...rest);
      };
    });
    await page.click('#results .hit[data-image="13"]');
    await page.waitForFunction(() => !document.getElementById('explain').hidden &&
      document.querySelectorAll('canvas[data-drawn="1"]').length > 0, { timeout: 30000 });
    const photoMap = await page.$eval('canvas[data-drawn="1"]', (canvas) => {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let orange = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i] > 150 && data[i + 1] > 80 && data[i + 2] < 90) ++orange;
      return { width: canvas.width, height: canvas.height, orange };
    });
    if (photoMap.width !== 300 || photoMap.height !== 150) fail(`the photo's step map is ${photoMap.width} x ${photoMap.height}, not 300 x 150`);
    if (photoMap.orange === 0) fail('no region is shaded on the photo');
    const drawn = await page.evaluate(() => window.drawnOnMaps);
    const whole = drawn.filter((d) => d.image.endsWith('/api/images/13') && d.args.length === 4);
    if (!whole.length || whole.some((d) => d.args.join() !== [0, 0, d.canvas[0], d.canvas[1]].join()))
      fail('the photo is not drawn over the whole step map: ' + JSON.stringify(whole.slice(0, 2)));
    // A box's crop of the photo lands on its own pixels: the 6 x 6 grid's cells tile the map.
    const crops = drawn.filter((d) => d.image.endsWith('/api/images/13') && d.args.length === 8).map((d) => d.args.slice(4));
    const right = Math.max(...crops.map(([x, , w]) => x + w)), bottom = Math.max(...crops.map(([, y, , h]) => y + h));
    if (crops.length < 36 || Math.abs(right - 300) > 0.5 || Math.abs(bottom - 150) > 0.5)
      fail(`the boxes do not tile the photo's map: ${crops.length} boxes up to ${right} x ${bottom}`);
    await page.screenshot({ path: join(artifacts, `serve-explain-photo-${browserName}.png`), fullPage: true });

    if (pageErrors.length) fail('errors on the page: ' + pageErrors.join('; '));
    if (process.exitCode !== 1)
      console.log(`page test (${browserName}): ok: ${hits} results (${pictures} pictures loaded), ` +
                  `${maps.length} step maps drawn, screenshot in ${screenshot}`);
  }
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  for (const server of servers) {
    if (server.exitCode !== null) continue;
    const exited = new Promise((resolve) => server.on('exit', (code) => resolve(code)));
    server.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) fail('the server exited with ' + code + ' on SIGTERM');
  }
  rmSync(work, { recursive: true, force: true });
}
