// The search page: captions, photos and "more like this" through the JSON API of the
// same server (no other origin is ever contacted).
'use strict';

const $ = (id) => document.getElementById(id);
const form = $('search-form'), caption = $('caption'), kInput = $('k');
const results = $('results'), statusLine = $('status'), errorBox = $('error');
const viewer = $('viewer'), viewerImage = $('viewer-image'), viewerName = $('viewer-name');
const dropZone = $('drop-zone'), upload = $('upload'), hint = $('hint');
let generation = 0;  // answers to superseded requests are dropped

function baseName(path) {
  const parts = String(path).split(/[\\/]/);
  return parts[parts.length - 1];
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
  statusLine.textContent = '';
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = '';
}

function kValue() {
  return kInput.value.trim() || '20';
}

async function query(url, options, label) {
  const mine = ++generation;
  clearError();
  statusLine.textContent = 'Searching ' + label + '\u2026';
  let response, body;
  try {
    response = await fetch(url, options);
    body = await response.json();
  } catch (e) {
    if (mine === generation) showError('The server did not answer (' + e.message + ').');
    return;
  }
  if (mine !== generation) return;
  if (!response.ok) {
    showError(body && body.error ? body.error : 'The server answered ' + response.status + '.');
    return;
  }
  render(body.results, label);
}

function render(hits, label) {
  results.replaceChildren();
  hint.hidden = true;
  hits.forEach((hit, rank) => {
    const fig = document.createElement('figure');
    fig.className = 'result';
    fig.tabIndex = 0;
    fig.dataset.id = hit.id;
    fig.dataset.rank = rank;
    const img = document.createElement('img');
    img.src = hit.thumbnail;
    img.alt = baseName(hit.file);
    img.loading = 'eager';
    const cap = document.createElement('figcaption');
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = hit.score.toFixed(4);
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = baseName(hit.file);
    name.title = hit.file;
    cap.append(score, name);
    fig.append(img, cap);
    const open = () => moreLike(hit);
    fig.addEventListener('click', open);
    fig.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
    results.append(fig);
  });
  statusLine.textContent = hits.length + ' result' + (hits.length === 1 ? '' : 's') + ' for ' + label + '.';
}

function moreLike(hit) {
  viewerImage.src = hit.image;
  viewerImage.alt = baseName(hit.file);
  viewerName.textContent = hit.file;
  viewer.hidden = false;
  query('/api/similar/' + encodeURIComponent(hit.id) + '?k=' + encodeURIComponent(kValue()),
        {}, 'images like ' + baseName(hit.file));
  window.scrollTo({top: 0});
}

function searchByPhoto(file) {
  if (!file) return;
  viewer.hidden = true;
  const data = new FormData();
  data.append('image', file, file.name);
  query('/api/search?k=' + encodeURIComponent(kValue()), {method: 'POST', body: data},
        'photo ' + file.name);
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  viewer.hidden = true;
  const q = caption.value;
  query('/api/search?q=' + encodeURIComponent(q) + '&k=' + encodeURIComponent(kValue()), {},
        '\u201c' + q.trim() + '\u201d');
});

upload.addEventListener('change', () => { searchByPhoto(upload.files[0]); upload.value = ''; });
$('viewer-close').addEventListener('click', () => { viewer.hidden = true; });

['dragenter', 'dragover'].forEach((type) => dropZone.addEventListener(type, (e) => {
  e.preventDefault();
  dropZone.classList.add('dragging');
}));
['dragleave', 'drop'].forEach((type) => dropZone.addEventListener(type, () => {
  dropZone.classList.remove('dragging');
}));
dropZone.addEventListener('drop', (e) => {
  e.preventDefault();
  if (e.dataTransfer.files.length) searchByPhoto(e.dataTransfer.files[0]);
});
fetch('/healthz').then((r) => r.json()).then((h) => {
  kInput.max = h.max_k;
  hint.textContent = h.images + ' photos indexed. ' + hint.textContent;
}).catch(() => {});
