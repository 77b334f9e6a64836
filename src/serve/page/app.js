'use strict';
// The page of `imram serve`: search, results, and the explain view (attention per step).
const $ = (id) => document.getElementById(id);
const state = { explanation: null, selected: 1, picture: null };

function showError(message) {
  const box = $('error');
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new Error('the server cannot be reached (' + e.message + ')');
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || ('HTTP ' + response.status));
  return body;
}

function mode() { return document.querySelector('input[name=mode]:checked').value; }

function applyMode() {
  const byImage = mode() === 'image';
  $('query-label').textContent = byImage ? 'Image index' : 'Describe a picture';
  $('query').type = byImage ? 'number' : 'search';
  $('query').placeholder = byImage ? '0' : 'a large red circle left of a blue square';
  $('query').value = '';
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === 'class') node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function search(event) {
  event.preventDefault();
  showError('');
  const query = $('query').value.trim();
  const top = parseInt($('top').value, 10) || 10;
  if (!query) { showError(mode() === 'image' ? 'Give an image index.' : 'Type a description first.'); return; }
  const body = mode() === 'image' ? { image: Number(query), top } : { text: query, top };
  if (mode() === 'image' && !Number.isInteger(body.image)) { showError('The image index must be a whole number.'); return; }
  $('status').textContent = 'Searching...';
  try {
    const answer = await api('/api/search', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    // Warnings (no known word, invalid UTF-8) say why a ranking may mean little.
    $('status').textContent = answer.results.length + ' results in ' + answer.timings.total_ms.toFixed(1) + ' ms' +
      (answer.warnings ? '. Note: ' + answer.warnings.join('; ') : '');
    if (mode() === 'image') showCaptions(answer); else showImages(answer);
  } catch (e) {
    // The previous answer would read as this query's.
    $('results').replaceChildren();
    $('status').textContent = '';
    showError(e.message);
  }
}

function showImages(answer) {
  const results = $('results');
  results.className = '';
  results.replaceChildren();
  for (const hit of answer.results) {
    const card = element('button', { class: 'hit', type: 'button', 'data-image': hit.image,
      'aria-label': 'rank ' + hit.rank + ', image ' + hit.image + ', score ' + hit.score.toFixed(4) });
    card.append(element('img', { src: hit.picture, alt: hit.description || ('image ' + hit.image) }));
    card.append(element('div', { class: 'meta' }, element('strong', {}, '#' + hit.rank), element('span', {}, hit.score.toFixed(4))));
    if (hit.description) card.append(element('div', { class: 'description' }, hit.description));
    card.addEventListener('click', () => explain(hit.image, { text: answer.query }));
    results.append(card);
  }
}

function showCaptions(answer) {
  const results = $('results');
  results.className = 'captions';
  results.replaceChildren(element('img', { src: answer.picture, alt: 'image ' + answer.image, width: 200, height: 200 }));
  for (const hit of answer.results) {
    const row = element('button', { class: 'hit' + (hit.own ? ' own' : ''), type: 'button', 'data-caption': hit.caption });
    row.append(element('div', { class: 'meta' }, element('span', {}, element('strong', {}, '#' + hit.rank), ' ' + hit.text),
      element('span', {}, hit.score.toFixed(4) + (hit.own ? ' (its own caption)' : ''))));
    row.addEventListener('click', () => explain(answer.image, { caption: hit.caption }));
    results.append(row);
  }
}

async function explain(image, caption) {
  showError('');
  const params = new URLSearchParams({ image: String(image) });
  if (caption.text !== undefined) params.set('text', caption.text); else params.set('caption', String(caption.caption));
  $('status').textContent = 'Explaining...';
  try {
    const explanation = await api('/api/explain?' + params.toString());
    const picture = new Image();
    picture.src = explanation.picture;
    await picture.decode().catch(() => null);
    state.explanation = explanation;
    state.picture = picture;
    state.selected = explanation.tokens.findIndex((t) => !t.special && t.known);
    if (state.selected < 0) state.selected = 1;
    $('status').textContent = 'Explained in ' + explanation.timings.total_ms.toFixed(1) + ' ms';
    renderExplanation();
    $('explain').hidden = false;
    $('results').hidden = true;
    $('explain').scrollIntoView();
    const chosen = document.querySelector('.token.selected');
    if (chosen) chosen.focus();
  } catch (e) {
    $('status').textContent = '';
    showError(e.message);
  }
}

function renderExplanation() {
  const x = state.explanation;
  $('explain-score').textContent = x.score.toFixed(4) + ' (image ' + x.image + ', ' + x.mode + '-IMRAM, K = ' + x.iteration_steps + ')';
  const tokens = $('tokens');
  tokens.replaceChildren();
  x.tokens.forEach((token, index) => {
    const chip = element('button', { type: 'button', class: 'token' + (token.special ? ' special' : '') + (token.known ? '' : ' unknown') +
      (index === state.selected ? ' selected' : ''), 'aria-pressed': String(index === state.selected),
      title: token.known ? '' : 'not in the vocabulary: the model reads it as <unk>' }, token.text);
    const select = () => { if (state.selected !== index) { state.selected = index; renderExplanation(); } };
    chip.addEventListener('mouseenter', select);
    chip.addEventListener('click', () => { select(); document.querySelectorAll('.token')[index].focus(); });
    tokens.append(chip);
  });
  const directions = $('directions');
  directions.replaceChildren();
  for (const direction of x.directions) {
    const title = direction.direction === 'text' ? 'text-IMRAM: the word attends over regions' : 'image-IMRAM: regions attend over the words; shading = attention to the word';
    const section = element('div', { class: 'direction' }, element('h3', {}, title + ' (score ' + direction.score.toFixed(4) + ')'));
    const steps = element('div', { class: 'steps' });
    direction.steps.forEach((step) => {
      const weights = direction.query === 'words' ? step.attention[state.selected] : step.attention.map((row) => row[state.selected]);
      const [width, height] = mapSize();
      const canvas = element('canvas', { width, height, 'data-step': step.step, 'data-direction': direction.direction,
        role: 'img', 'aria-label': 'step ' + step.step + ' attention of "' + x.tokens[state.selected].text + '"' });
      const background = drawStep(canvas, weights);
      let numbers = 'step ' + step.step + ': similarity ' + step.similarity.toFixed(4);
      if (step.gate_mean && direction.query === 'words') numbers += ', gate ' + step.gate_mean[state.selected].toFixed(3);
      // Only a word's attention over regions sums to 1 over them; a region's attention to a word does not.
      if (background !== null && direction.query === 'words') numbers += ', background ' + background.toFixed(2);
      steps.append(element('figure', { class: 'step' }, canvas, element('figcaption', { class: 'numbers' }, numbers)));
    });
    section.append(steps);
    directions.append(section);
  }
}

// A step map has the picture's shape, its longer side 300 px: a photo is not stretched, and a
// box (fractions of the picture's width and height) covers the same pixels whatever the shape.
function mapSize() {
  const p = state.picture;
  if (!p || !(p.naturalWidth > 0 && p.naturalHeight > 0)) return [300, 300];
  const scale = 300 / Math.max(p.naturalWidth, p.naturalHeight);
  return [Math.max(1, Math.round(p.naturalWidth * scale)), Math.max(1, Math.round(p.naturalHeight * scale))];
}

// Shades each region's box by its weight (regions sharing a box add up); without boxes, a
// grid of region cells. Returns the weight on background regions (null without boxes).
function drawStep(canvas, weights) {
  const x = state.explanation, g = canvas.getContext('2d');
  const size = x.picture_size || 300;
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (state.picture && state.picture.complete && state.picture.naturalWidth > 0) g.drawImage(state.picture, 0, 0, canvas.width, canvas.height);
  // Boxes come in units of a size x size square: x and width scale with the map's width, y and
  // height with its height.
  const sx = canvas.width / size, sy = canvas.height / size;
  let background = null;
  if (x.boxes) {
    const boxes = new Map();
    background = 0;
    weights.forEach((w, r) => {
      const box = x.boxes[r];
      if (!box) { background += w; return; }
      const key = box.join(',');
      boxes.set(key, { box, weight: (boxes.get(key) ? boxes.get(key).weight : 0) + w });
    });
    const top = Math.max(1e-9, ...Array.from(boxes.values(), (b) => b.weight));
    g.fillStyle = 'rgba(0,0,0,0.35)';
    g.fillRect(0, 0, canvas.width, canvas.height);
    for (const { box, weight } of boxes.values()) {
      const [bx, by, bw, bh] = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy];
      if (state.picture && state.picture.naturalWidth > 0) g.drawImage(state.picture, box[0] * state.picture.naturalWidth / size,
        box[1] * state.picture.naturalHeight / size, box[2] * state.picture.naturalWidth / size, box[3] * state.picture.naturalHeight / size, bx, by, bw, bh);
      g.fillStyle = 'rgba(255,160,0,' + (0.75 * weight / top).toFixed(3) + ')';
      g.fillRect(bx, by, bw, bh);
      g.strokeStyle = '#b27a00';
      g.lineWidth = 2;
      g.strokeRect(bx, by, bw, bh);
      // Above the box (below it at the top edge), on a light backing: inside, it covers small shapes.
      const label = weight.toFixed(2);
      g.font = '13px sans-serif';
      const lw = g.measureText(label).width + 6, ly = by >= 17 ? by - 17 : Math.min(by + bh + 1, canvas.height - 17);
      g.fillStyle = 'rgba(255,255,255,0.85)';
      g.fillRect(bx, ly, lw, 16);
      g.fillStyle = '#000';
      g.fillText(label, bx + 3, ly + 12);
    }
  } else {
    const cells = weights.length, columns = Math.ceil(Math.sqrt(cells)), rows = Math.ceil(cells / columns);
    const cw = canvas.width / columns, ch = canvas.height / rows;
    const top = Math.max(1e-9, ...weights);
    weights.forEach((w, r) => {
      g.fillStyle = 'rgba(255,160,0,' + (0.85 * w / top).toFixed(3) + ')';
      g.fillRect((r % columns) * cw, Math.floor(r / columns) * ch, cw - 1, ch - 1);
    });
  }
  canvas.dataset.drawn = '1';
  return background;
}

async function loadInfo() {
  try {
    const info = await api('/api/info');
    $('info').textContent = 'gallery ' + info.gallery.name + ': ' + info.gallery.images + ' images, ' + info.gallery.captions +
      ' captions; ' + info.model.mode + '-IMRAM, K = ' + info.model.iteration_steps + '; ' + info.index + ' search' +
      (info.exact_store === false ? '; scores approximate (the index keeps compressed regions only)' : '');
  } catch (e) {
    showError(e.message);
  }
}

$('search-form').addEventListener('submit', search);
document.querySelectorAll('input[name=mode]').forEach((radio) => radio.addEventListener('change', applyMode));
$('close-explain').addEventListener('click', () => { $('explain').hidden = true; $('results').hidden = false; });
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !$('explain').hidden) { $('close-explain').click(); $('query').focus(); }
  if (!state.explanation || $('explain').hidden || !event.target.classList.contains('token')) return;
  const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
  if (!step) return;
  const next = Math.min(state.explanation.tokens.length - 1, Math.max(0, state.selected + step));
  state.selected = next;
  renderExplanation();
  document.querySelectorAll('.token')[next].focus();
});
loadInfo();
