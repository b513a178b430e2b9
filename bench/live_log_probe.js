// Installed in the run page by bench/web_live_log.py (WebDriver's executeScript: the
// function body below gets `arguments`). Watches `#log` and records, for each
// "LIVELINE <n> <unix seconds>" line, the moment it first appears in the DOM, on the
// same clock as the experiment's time.time(): performance.timeOrigin + performance.now()
// (milliseconds since the epoch). Results accumulate in window.__liveLog:
// {n: [appeared_ms, printed_ms]}.
const log = document.querySelector(arguments[0] || "#log");
if (!log) return false;
const seen = (window.__liveLog = window.__liveLog || {});
const pattern = /LIVELINE (\d+) (\d+\.\d+)/g;
let scanned = 0; // characters of the text already scanned (less the last, partial line)
const scan = () => {
  const now = performance.timeOrigin + performance.now();
  const text = log.textContent;
  if (text.length < scanned) scanned = 0; // replaced, not appended: scan it all again
  const from = text.lastIndexOf("\n", Math.max(0, scanned - 1)) + 1;
  pattern.lastIndex = 0;
  for (const match of text.slice(from).matchAll(pattern)) {
    if (!(match[1] in seen)) seen[match[1]] = [now, parseFloat(match[2]) * 1000];
  }
  scanned = text.length;
};
new MutationObserver(scan).observe(log, { childList: true, subtree: true, characterData: true });
scan();
return true;
